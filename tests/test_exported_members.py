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
