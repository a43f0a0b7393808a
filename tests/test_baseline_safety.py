"""Baselines survive a writer killed mid-replace, refuse concurrent writers, and run on the
lowest Python the package claims to support."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


# --- the lowest supported Python ---


def test_mypy_and_ruff_target_the_lowest_python_that_requires_python_allows() -> None:
    # a regex, not tomllib (3.11+): these tests run on the lowest version too
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lowest = re.search(r'^requires-python = ">=3\.(\d+)"$', config, re.M)
    assert lowest
    minor = lowest.group(1)
    assert f'\npython_version = "3.{minor}"\n' in config
    assert f'\ntarget-version = "py3{minor}"\n' in config


def test_the_manifest_timestamp_needs_no_python_311_names() -> None:
    # datetime.UTC is 3.11+; mypy at 3.10 reports it, this keeps it out without running mypy
    source = (ROOT / "parity" / "baseline" / "manifest.py").read_text(encoding="utf-8")
    assert "from datetime import UTC" not in source
    from parity.baseline.manifest import now_utc

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_utc())


def _python_310() -> str | None:
    candidates = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    candidates.append(shutil.which("python3.10") or "")
    for python in filter(None, candidates):
        if subprocess.run([python, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return python
    return None


COMPILE_ALL = """
import pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
"""


def test_the_package_compiles_under_python_310() -> None:
    python = _python_310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter here")
    done = subprocess.run(
        [python, "-c", COMPILE_ALL, str(ROOT / "parity")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
