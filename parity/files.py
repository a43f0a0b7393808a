"""Small file helpers every layer may use: atomic writes and sha256 digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting and restoring it: os has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write via a temp file in the same directory, fsync and rename, so readers never see half a
    file; the file gets the mode a plain open() would give it (0644 under umask 022)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; a report or corpus file is meant to be read like any other file
        if hasattr(os, "fchmod"):  # POSIX; Windows has no modes to follow
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            # a failed write ("No space left on device") names no file: say which one it was
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    fsync_directory(path.parent)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A unique temp file beside `path` to write (mkstemp, with the mode a plain open() would
    give it), renamed over `path` when the block ends and removed if it raises: readers see the
    old file or the new one, and two writers never share a temp file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600, as a plain open() would not
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def os_reason(exc: OSError) -> str:
    """What went wrong, without the path (a message adds that itself): "Permission denied"."""
    return exc.strerror or str(exc) or type(exc).__name__


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_sha256(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes: how baselines, the cache and vector exports key texts."""
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
