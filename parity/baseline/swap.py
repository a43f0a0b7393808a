"""Replacing a baseline directory so that a crash never leaves it missing or half-written.

Files are written and fsynced into a staging folder `.DIR.tmp-<pid>` beside DIR. Then:

- Linux: renameat2(RENAME_EXCHANGE) swaps staging and DIR in one atomic step, so DIR always
  holds a complete baseline, the old one or the new one; the old one then becomes DIR.prev. A
  journal `.DIR.exchanging` records the staging folder's inode first: killed after the exchange,
  the next command sees DIR carry that inode and keeps the staging folder (the old baseline) as
  DIR.prev instead of deleting it.
- elsewhere (or where the filesystem refuses the exchange): a journal `.DIR.replacing` names the
  staging folder, DIR.prev is set aside, DIR becomes DIR.prev and staging becomes DIR. Killed
  between those renames, the next command that writes or reads DIR finds the journal of a dead
  process and finishes (or rolls back) the swap, saying so.

A lock file DIR.lock refuses a second writer. It appears complete or not at all: the writer's PID
is written to a temp file, which is then hard-linked to DIR.lock (fails if it exists). A lock
whose PID no longer runs is taken over (renamed aside, checked to be the same stale file, then
removed) and the folders its writer left are removed, both with a message. A lock that names no
PID (empty, unreadable) is treated as held, and so is every lock on Windows, where parity does not
probe other processes: the message says which file to delete if no writer is running. PARITY_TEST_KILL_AT=<step> SIGKILLs the writer at that step (tests only) and
PARITY_TEST_SWAP=rename forces the journalled renames.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from parity.errors import BaselineError
from parity.files import fsync_directory

Notify = Callable[[str], None]
_HELD: set[Path] = set()
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_WINDOWS = os.name == "nt"


def to_stderr(message: str) -> None:
    print(f"parity: {message}", file=sys.stderr)


def _kill_at(step: str) -> None:
    """Test hook: die here, as a crash or `kill -9` would (a no-op unless the variable is set)."""
    if os.environ.get("PARITY_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs; always True on Windows, where os.kill(pid, 0) would not
    probe but send CTRL_C_EVENT."""
    if _WINDOWS:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{suffix}")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _link_lock(lock: Path) -> int | None:
    """Create `lock` holding this PID in one step; its inode, or None if a lock exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{lock.name}-", dir=lock.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; anyone may read which process holds it
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return None
        return os.stat(tmp).st_ino
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_lock(lock: Path) -> tuple[str, int] | None:
    """The lock's text and inode, or None when there is no lock (any more)."""
    try:
        with open(lock, "rb") as file:
            data = file.read(64)
            inode = os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return None
    except OSError:
        return "", -1
    return data.decode("utf-8", errors="replace").strip(), inode


def _refusal(lock: Path, text: str) -> BaselineError:
    """Why DIR.lock blocks this writer, and what to do if it is really stale."""
    target = lock.with_name(lock.name[: -len(".lock")])
    if not text.isdigit():
        return BaselineError(
            f"{target}: the lock {lock} names no process (it is empty or unreadable), so another "
            "parity process may be writing this baseline; wait and retry, or delete the lock if "
            "no parity process is running"
        )
    if _WINDOWS:
        return BaselineError(
            f"{target}: the lock {lock} says parity process {text} is writing this baseline "
            "(parity cannot check processes on Windows); wait for it to finish, or delete the "
            "lock if that process is gone"
        )
    return BaselineError(
        f"{target}: another parity process (pid {text}) is writing this baseline (lock {lock}); "
        "wait for it to finish, or delete the lock if that process is not parity"
    )


def _remove_stale(lock: Path, text: str, inode: int) -> bool:
    """Move the stale lock aside and delete it if it is still the file judged stale (same
    inode and PID: a dead writer's lock never changes); a lock taken meanwhile is put back."""
    aside = lock.with_name(f".{lock.name}.stale-{os.getpid()}")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:
        return False  # another writer moved it first
    if _read_lock(aside) == (text, inode):
        aside.unlink()
        return True
    try:
        os.link(aside, lock)  # a live writer's new lock: give it back
    except FileExistsError:
        pass
    aside.unlink()
    return False


def _take_lock(lock: Path, notify: Notify) -> int:
    """Hold DIR.lock; return its inode (release checks it is still ours)."""
    for _ in range(5):
        inode = _link_lock(lock)
        if inode is not None:
            return inode
        found = _read_lock(lock)
        if found is None:
            continue  # released meanwhile
        text, held = found
        if not text.isdigit() or (int(text) != os.getpid() and _alive(int(text))):
            raise _refusal(lock, text)
        if _remove_stale(lock, text, held):
            notify(f"took over the stale lock {lock} (process {text} is gone)")
    raise BaselineError(f"{lock}: could not take the lock; delete it and retry")


def _release(lock: Path, inode: int) -> None:
    """Delete DIR.lock if it is still the one this process made."""
    found = _read_lock(lock)
    if found is not None and found[1] == inode:
        lock.unlink(missing_ok=True)


@contextmanager
def baseline_lock(path: Path, notify: Notify = to_stderr) -> Iterator[None]:
    """Hold DIR.lock (re-entrant within this process); recover an interrupted replace first."""
    path = Path(path).absolute()
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(path)
    inode = _take_lock(lock, notify)
    _HELD.add(path)
    try:
        _recover_locked(path, notify)
        yield
    finally:
        _HELD.discard(path)
        _release(lock, inode)


def _leftovers(path: Path) -> list[tuple[Path, int]]:
    """Staging and retired folders of DIR with the PID that made them."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp|prev-old)-(\d+)")
    if not path.parent.is_dir():
        return []
    return [
        (child, int(match.group(1)))
        for child in sorted(path.parent.iterdir())
        if (match := pattern.fullmatch(child.name))
    ]


def recover(path: Path, notify: Notify = to_stderr) -> None:
    """Finish an interrupted replace of DIR if one is pending and nobody is writing it now."""
    path = Path(path).absolute()
    journal = _sibling(path, "replacing")
    stale = [p for p, pid in _leftovers(path) if pid != os.getpid() and not _alive(pid)]
    pending = journal.exists() or _sibling(path, "exchanging").exists()
    if path in _HELD or not (pending or stale):
        return
    try:
        with baseline_lock(path, notify):
            pass  # taking the lock recovers
    except BaselineError:
        return  # a live writer owns it and will finish its own swap
    except OSError as exc:
        notify(f"{path}: an interrupted replace could not be recovered here ({exc})")


def _write_journal(journal: Path, record: dict[str, object]) -> None:
    """Write and fsync a small JSON journal beside DIR (then its folder)."""
    with open(journal, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_directory(journal.parent)


def _recover_locked(path: Path, notify: Notify) -> None:
    journal = _sibling(path, "replacing")
    if journal.exists():
        _finish_journal(path, journal, notify)
    exchanging = _sibling(path, "exchanging")
    if exchanging.exists():
        _finish_exchange(path, exchanging, notify)
    for folder, pid in _leftovers(path):
        if pid != os.getpid():
            shutil.rmtree(folder, ignore_errors=True)
            notify(f"removed {folder.name}, left beside {path} by an interrupted write (pid {pid})")


def _read_journal(journal: Path, key: str) -> tuple[Path, str] | None:
    """A journal's staging folder and its `key` entry; None (and the journal removed) when it
    cannot be read: it was written before anything it guards was moved."""
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        return Path(record["staging"]), str(record[key])
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)
        return None


def _finish_journal(path: Path, journal: Path, notify: Notify) -> None:
    """The renames fallback was interrupted: put a complete baseline at DIR."""
    if (record := _read_journal(journal, "retired")) is None:
        return
    staging, retired = record[0], Path(record[1])
    previous = path.with_name(path.name + ".prev")
    if not path.exists() and staging.is_dir():
        staging.rename(path)  # the new baseline was complete before the journal was written
        notify(
            f"{path}: finished a replace interrupted between its renames; the new baseline is in place"
        )
    elif not path.exists() and previous.is_dir():
        previous.rename(path)
        notify(f"{path}: rolled back a replace interrupted between its renames")
    if not previous.exists() and retired.is_dir():
        retired.rename(previous)
    fsync_directory(path.parent)
    journal.unlink(missing_ok=True)


def _finish_exchange(path: Path, journal: Path, notify: Notify) -> None:
    """The exchange happened if DIR now carries the staging folder's inode: the staging folder
    then holds the replaced baseline, which becomes DIR.prev; otherwise it is dropped below."""
    if (record := _read_journal(journal, "inode")) is None or not record[1].isdigit():
        journal.unlink(missing_ok=True)
        return
    staging, inode = record[0], int(record[1])
    if staging.is_dir() and path.is_dir() and path.stat().st_ino == inode:
        _retire(staging, path.with_name(path.name + ".prev"))
        fsync_directory(path.parent)
        notify(f"{path}: kept the baseline replaced by an interrupted write as {path.name}.prev")
    journal.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories; False where the system cannot."""
    if os.environ.get("PARITY_TEST_SWAP") == "rename" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}")


def write_files(staging: Path, files: dict[str, bytes]) -> None:
    """Write and fsync every file, then the folder itself."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name, data in files.items():
        target = staging / name
        try:
            with open(target, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            if exc.filename is None:  # a full disk names no file: say which one it was
                raise OSError(exc.errno, exc.strerror, str(target)) from exc
            raise
    fsync_directory(staging)


def replace_dir(path: Path, files: dict[str, bytes], notify: Notify = to_stderr) -> Path | None:
    """Write `files` as directory `path`; return where the replaced one was kept, if any."""
    path = Path(path).absolute()
    with baseline_lock(path, notify):
        _kill_at("locked")
        staging = _sibling(path, f"tmp-{os.getpid()}")
        try:
            write_files(staging, files)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _kill_at("staged")
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # an empty directory made for us is not a baseline worth keeping
        if not path.exists():
            staging.rename(path)
            fsync_directory(path.parent)
            return None
        exchanging = _sibling(path, "exchanging")
        _write_journal(exchanging, {"staging": str(staging), "inode": staging.stat().st_ino})
        if _exchange(staging, path):
            fsync_directory(path.parent)
            _kill_at("exchanged")
            _retire(staging, path.with_name(path.name + ".prev"))
            exchanging.unlink(missing_ok=True)
        else:
            exchanging.unlink(missing_ok=True)
            _swap_by_renames(staging, path)
        fsync_directory(path.parent)
        return path.with_name(path.name + ".prev")


def _retire(old: Path, previous: Path) -> None:
    """Make `old` (the replaced baseline) DIR.prev, dropping the older DIR.prev. Killed in
    between, `old` is still where the exchange journal says, so recovery finishes this."""
    shutil.rmtree(previous, ignore_errors=True)
    _kill_at("prev-dropped")
    old.rename(previous)


def _swap_by_renames(staging: Path, path: Path) -> None:
    previous = path.with_name(path.name + ".prev")
    retired = _sibling(path, f"prev-old-{os.getpid()}")
    journal = _sibling(path, "replacing")
    _write_journal(journal, {"pid": os.getpid(), "staging": str(staging), "retired": str(retired)})
    moved_prev = moved_path = False
    try:
        if previous.exists():
            previous.rename(retired)
            moved_prev = True
            _kill_at("retired")
        path.rename(previous)
        moved_path = True
        _kill_at("moved-old")
        staging.rename(path)
        _kill_at("moved-new")
    except BaseException:
        if moved_path and not path.exists():
            previous.rename(path)
        if moved_prev and not previous.exists():
            retired.rename(previous)
        shutil.rmtree(staging, ignore_errors=True)
        journal.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    journal.unlink(missing_ok=True)
    shutil.rmtree(retired, ignore_errors=True)
