"""The public API is exactly what `parity.__all__` lists (as httpx does)."""

import parity


def test_all_exports_exist_and_nothing_public_is_missing() -> None:
    exported = set(parity.__all__)
    assert all(hasattr(parity, name) for name in exported)
    public = {
        name
        for name, value in vars(parity).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("parity")
    }
    assert public <= exported


def test_importing_parity_loads_neither_numpy_nor_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, parity; print(sorted(m for m in ('numpy', 'torch', 'transformers') "
        "if m in sys.modules)); parity.Tolerance; print('numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[]", "True"]
