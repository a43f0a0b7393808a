"""Baselines survive a writer killed mid-replace, refuse concurrent writers, and run on the
lowest Python the package claims to support."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
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


@pytest.mark.slow
def test_mypy_finds_no_name_missing_from_the_lowest_python() -> None:
    # mypy reads python_version (3.10) from pyproject.toml: datetime.UTC, enum.StrEnum,
    # typing.Self and the like are errors there even when this interpreter is newer
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]


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


# --- crash-safe replace: kill the writer at each step ---

WRITER = """
import sys
import numpy as np
from parity.baseline import load_baseline, write_baseline

old = load_baseline(sys.argv[1])
new = {label: v + np.float32(1.0) for label, v in old.vectors.items()}
write_baseline(old.path, old.manifest, old.texts, new, force=True)
"""


@pytest.fixture(scope="module")
def made(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from parity.cli import main

    root = tmp_path_factory.mktemp("safety")
    texts = root / "texts.jsonl"
    texts.write_text('"plain text"\n"hello world"\n', encoding="utf-8")
    argv = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
    assert main([*argv, "--adapter", "custom", "--no-retrieval", "--out", str(root / "base")]) == 0
    return root / "base"


@pytest.fixture
def base(made: Path, tmp_path: Path) -> Path:
    shutil.copytree(made, tmp_path / "base")
    return tmp_path / "base"


def _kill_writer(base: Path, step: str, swap: str) -> None:
    env = {**os.environ, "PARITY_TEST_KILL_AT": step}
    if swap == "rename":
        env["PARITY_TEST_SWAP"] = "rename"
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(base)], env=env, capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


KILLS = [
    ("exchange", "locked", "old"),
    ("exchange", "staged", "old"),
    ("exchange", "exchanged", "new"),
    ("exchange", "prev-dropped", "new"),
    ("rename", "staged", "old"),
    ("rename", "retired", "old"),
    ("rename", "moved-old", "new"),
    ("rename", "moved-new", "new"),
]
OLDER = 2.0  # DIR.prev before the replace holds the vectors + 2: one generation older than DIR


def _older_prev(base: Path) -> None:
    """Make DIR.prev a baseline one generation older than DIR (other vectors)."""
    from parity.baseline import load_baseline, write_baseline

    prev = base.with_name("base.prev")
    shutil.copytree(base, prev)
    old = load_baseline(prev)
    older = {label: v + np.float32(OLDER) for label, v in old.vectors.items()}
    write_baseline(prev, old.manifest, old.texts, older, force=True, notify=lambda m: None)
    shutil.rmtree(base.with_name("base.prev.prev"))


@pytest.mark.parametrize(("swap", "step", "expected"), KILLS)
def test_a_writer_killed_at_any_step_leaves_a_complete_baseline(
    base: Path, made: Path, swap: str, step: str, expected: str
) -> None:
    from parity.baseline import load_baseline

    original = load_baseline(made).vectors["custom"]
    _older_prev(base)
    _kill_writer(base, step, swap)
    if (swap, step) == ("rename", "moved-old"):
        assert not base.exists()  # the one window the renames fallback has; recovered below
    messages: list[str] = []
    vectors = load_baseline(base, notify=messages.append).vectors["custom"]
    offset = 0.0 if expected == "old" else 1.0
    np.testing.assert_allclose(vectors, original + np.float32(offset), atol=1e-6)
    leftovers = sorted(p.name for p in base.parent.iterdir() if p.name != "base.lock")
    assert leftovers == ["base", "base.prev"]
    # DIR.prev: the replaced baseline once the new one is in place, else still the older one
    prev = load_baseline(base.with_name("base.prev")).vectors["custom"]
    np.testing.assert_allclose(prev, original + np.float32(0.0 if offset else OLDER), atol=1e-6)
    if step == "locked":
        assert messages == []  # nothing to recover; the stale lock is taken over by a writer
    elif (swap, step) == ("rename", "moved-old"):
        assert any("finished a replace interrupted between its renames" in m for m in messages)
    elif swap == "exchange" and expected == "new":
        assert any(
            "kept the baseline replaced by an interrupted write as base.prev" in m for m in messages
        )
    else:
        assert any(m.startswith("removed .base.") and "interrupted write" in m for m in messages)
    # the next writer takes over a stale lock and says so; the old lock never blocks it
    from parity.baseline import write_baseline

    notes: list[str] = []
    loaded = load_baseline(base)
    write_baseline(
        base, loaded.manifest, loaded.texts, loaded.vectors, force=True, notify=notes.append
    )
    assert (step == "locked") == any("took over the stale lock" in n for n in notes)
    assert not base.with_name("base.lock").exists()


def test_a_complete_replace_keeps_the_old_as_prev_and_leaves_nothing_behind(
    base: Path, made: Path
) -> None:
    from parity.baseline import load_baseline, write_baseline

    old = load_baseline(base)
    new = {k: v + np.float32(1.0) for k, v in old.vectors.items()}
    assert write_baseline(base, old.manifest, old.texts, new, force=True) == base.with_name(
        "base.prev"
    )
    np.testing.assert_array_equal(load_baseline(base).vectors["custom"], new["custom"])
    np.testing.assert_array_equal(
        load_baseline(base.with_name("base.prev")).vectors["custom"], old.vectors["custom"]
    )
    assert sorted(p.name for p in base.parent.iterdir()) == ["base", "base.prev"]


@pytest.mark.parametrize("command", ["create", "update"])
def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    base: Path, bpe_model: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from parity.cli import main

    holder = subprocess.Popen(["sleep", "60"])
    try:
        base.with_name("base.lock").write_text(f"{holder.pid}\n")
        before = sorted((p.name, p.stat().st_size) for p in base.iterdir())
        if command == "create":
            texts = base / "texts.jsonl"
            argv = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
            argv += ["--adapter", "custom", "--no-retrieval", "--out", str(base), "--force"]
        else:
            argv = ["gate", "--baseline", str(base), "--update", "--no-diagnose"]
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"parity: error: {base}: another parity process (pid {holder.pid}) is writing this "
            f"baseline (lock {base}.lock); wait for it to finish, or delete the lock if that "
            "process is not parity"
        )
        assert sorted((p.name, p.stat().st_size) for p in base.iterdir()) == before
        assert base.with_name("base.lock").read_text() == f"{holder.pid}\n"
    finally:
        holder.kill()
        holder.wait()


# --- the lock: complete or absent, stale ones taken over, unknown ones left to the user ---


@pytest.mark.parametrize("content", ["", "not a pid\n"])
def test_a_lock_that_names_no_process_is_held_and_says_what_to_do(
    base: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from parity.cli import main

    lock = base.with_name("base.lock")
    lock.write_text(content)
    before = sorted((p.name, p.stat().st_size) for p in base.iterdir())
    assert main(["gate", "--baseline", str(base), "--update", "--no-diagnose", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"parity: error: {base}: the lock {lock} names no process (it is empty or unreadable), "
        "so another parity process may be writing this baseline; wait and retry, or delete the "
        "lock if no parity process is running"
    )
    assert lock.read_text() == content
    assert sorted((p.name, p.stat().st_size) for p in base.iterdir()) == before


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_stale_lock_is_taken_over_said_and_released(base: Path) -> None:
    from parity.baseline.swap import baseline_lock

    lock = base.with_name("base.lock")
    pid = _dead_pid()
    lock.write_text(f"{pid}\n")
    notes: list[str] = []
    with baseline_lock(base, notes.append):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert notes == [f"took over the stale lock {lock.absolute()} (process {pid} is gone)"]
    assert sorted(p.name for p in base.parent.iterdir()) == ["base"]


def test_the_lock_appears_with_its_pid_in_one_step(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what a second writer could read while the first takes the lock: no lock, or one naming it
    from parity.baseline import swap

    lock = base.with_name("base.lock").absolute()
    seen: list[str | None] = []
    monkeypatch.setattr(swap.os, "fdopen", _watched(os.fdopen, seen, lock))
    monkeypatch.setattr(swap.os, "link", _watched(os.link, seen, lock))
    with swap.baseline_lock(base, lambda _: None):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert seen and set(seen) <= {None, f"{os.getpid()}\n"}


def _watched(call: Callable[..., Any], seen: list[str | None], lock: Path) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(lock.read_text() if lock.exists() else None)
        result = call(*args, **kwargs)
        seen.append(lock.read_text() if lock.exists() else None)
        return result

    return wrapper


def test_a_lock_taken_while_a_stale_one_is_removed_is_given_back(base: Path) -> None:
    # writer A judged the lock stale; meanwhile writer B took it over and holds a new one
    from parity.baseline.swap import _read_lock, _remove_stale

    lock = base.with_name("base.lock")
    lock.write_text(f"{_dead_pid()}\n")
    judged = _read_lock(lock)
    assert judged is not None
    lock.unlink()
    lock.write_text(f"{os.getpid()}\n")  # B's live lock, a new file
    assert not _remove_stale(lock, *judged)
    assert lock.read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in base.parent.iterdir()) == ["base", "base.lock"]


def test_on_windows_a_lock_is_never_probed_and_the_user_is_told_to_remove_it(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parity.baseline import swap
    from parity.errors import BaselineError

    def no_kill(pid: int, sig: int) -> None:
        raise AssertionError("os.kill(pid, 0) sends CTRL_C_EVENT on Windows")

    monkeypatch.setattr(swap, "_WINDOWS", True)
    monkeypatch.setattr(swap.os, "kill", no_kill)
    lock = base.with_name("base.lock")
    pid = _dead_pid()
    lock.write_text(f"{pid}\n")
    with pytest.raises(BaselineError) as caught:
        with swap.baseline_lock(base, lambda _: None):
            pass
    assert str(caught.value) == (
        f"{base.absolute()}: the lock {lock.absolute()} says parity process {pid} is writing this "
        "baseline (parity cannot check processes on Windows); wait for it to finish, or delete "
        "the lock if that process is gone"
    )
    assert lock.read_text() == f"{pid}\n"


def test_a_replace_works_where_directories_cannot_be_opened(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parity.baseline import load_baseline, write_baseline

    real_open = os.open

    def no_directories(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))  # as Windows says
        return real_open(path, flags, *args, **kwargs)

    old = load_baseline(base)
    new = {k: v + np.float32(1.0) for k, v in old.vectors.items()}
    monkeypatch.setattr(os, "open", no_directories)
    write_baseline(base, old.manifest, old.texts, new, force=True, notify=lambda _: None)
    monkeypatch.undo()
    np.testing.assert_array_equal(load_baseline(base).vectors["custom"], new["custom"])
