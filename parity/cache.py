"""A content-addressed, size-bounded on-disk cache of embeddings, safe under concurrent runs.

Layout: ROOT/v1/<key>/<shard>.npz, one shard per store() (the texts' sha256 and their float32
vectors). `key` digests everything that decides a vector except the text: the adapter's effective
configuration (describe(), library versions and device included), its model files' hashes and
the platform. A shard is written to a temp file, fsynced and renamed, so a reader sees a whole
shard or none; one that does not load (a damaged disk) is removed and counts as a miss. Reading a
shard touches its mtime; past `max_bytes`, the least recently used shards go first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.files import sha256_file, write_atomic

DEFAULT_DIR = ".parity-cache"
# PARITY_CACHE=DIR moves the default cache; PARITY_CACHE=off turns it off (the test suite does)
ENV = "PARITY_CACHE"
DEFAULT_MAX_BYTES = 2 << 30
FORMAT = "v1"
# describe() keys that name a run, not what the adapter computes
_NOT_KEYED = ("label", "model")

_model_digests: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def model_digest(model: str | Path) -> str | None:
    """sha256 over a model directory's files (path and content), or None when `model` is not
    a directory (a served model name); memoized per file list, sizes and mtimes."""
    root = Path(model)
    if not str(model) or not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = tuple((p.relative_to(root).as_posix(), *_size_mtime(p)) for p in files)
    memo = (str(root.resolve()), stamp)
    if memo not in _model_digests:
        digest = hashlib.sha256()
        for path, (relative, _, _) in zip(files, stamp, strict=True):
            digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
        _model_digests[memo] = digest.hexdigest()
    return _model_digests[memo]


def _size_mtime(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def cache_key(describe: Mapping[str, Any], model: str | Path, code: str) -> str:
    """The key of an adapter's vectors: its effective configuration, model files, platform, and
    `code` (the adapter class and parity's version: a new release may embed differently)."""
    files = model_digest(model)
    material = {
        "code": code,
        "describe": {k: v for k, v in describe.items() if k not in _NOT_KEYED},
        "model_files": files,
        "model": None if files else str(model),  # a served model: its name
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def default_cache(given: str | None, disabled: bool) -> EmbeddingCache | None:
    """The cache a command uses: --no-cache or PARITY_CACHE=off -> None; else --cache DIR,
    $PARITY_CACHE, or .parity-cache in the working directory."""
    chosen = given or os.environ.get(ENV) or DEFAULT_DIR
    if disabled or (not given and chosen.strip().lower() == "off"):
        return None
    return EmbeddingCache(chosen)


@dataclass(frozen=True)
class CacheInfo:
    """What `parity cache info` prints."""

    root: Path
    keys: int
    shards: int
    vectors: int
    bytes: int
    max_bytes: int

    def lines(self) -> list[str]:
        return [
            f"cache: {self.root}",
            f"adapters/configurations: {self.keys}",
            f"shards: {self.shards}, vectors: {self.vectors}",
            f"size: {self.bytes / 1e6:.1f} MB of {self.max_bytes / 1e6:.0f} MB",
        ]


class EmbeddingCache:
    """Vectors by (key, text sha256). Never raises on a damaged or vanished entry: a miss."""

    def __init__(self, root: str | Path = DEFAULT_DIR, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes

    def _dir(self, key: str) -> Path:
        return self.root / FORMAT / key

    def lookup(self, key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vector of each hash that has one."""
        wanted = set(hashes)
        found: dict[str, np.ndarray] = {}
        folder = self._dir(key)
        if not folder.is_dir():
            return found
        for shard in sorted(folder.glob("*.npz")):
            loaded = self._read(shard)
            if loaded is None:
                continue
            shard_hashes, vectors = loaded
            hit = False
            for row, digest in enumerate(shard_hashes):
                if digest in wanted and digest not in found:
                    found[digest] = vectors[row]
                    hit = True
            if hit:
                _touch(shard)
            if len(found) == len(wanted):
                break
        return found

    def _read(self, shard: Path) -> tuple[list[str], np.ndarray] | None:
        try:
            # our own handle: np.load leaves its file open when a damaged archive raises
            with shard.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
                hashes = [str(h) for h in data["sha256"].tolist()]
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        except FileNotFoundError:  # evicted by another run meanwhile
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            shard.unlink(missing_ok=True)  # damaged: never read again
            return None
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            shard.unlink(missing_ok=True)
            return None
        return hashes, vectors

    def store(self, key: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors (one row per hash) under `key`, then evict past the size bound."""
        if not len(hashes):
            return
        buffer = io.BytesIO()
        np.savez(buffer, sha256=np.asarray(hashes), vectors=np.asarray(vectors, np.float32))
        name = hashlib.sha256("".join(hashes).encode()).hexdigest()[:32]
        write_atomic(self._dir(key) / f"{name}.npz", buffer.getvalue())
        self.evict()

    def _shards(self) -> list[Path]:
        base = self.root / FORMAT
        return list(base.glob("*/*.npz")) if base.is_dir() else []

    def evict(self) -> int:
        """Remove least recently used shards until the cache is within its bound; how many."""
        sized = []
        for shard in self._shards():
            try:
                stat = shard.stat()
            except FileNotFoundError:
                continue
            sized.append((stat.st_mtime_ns, stat.st_size, shard))
        total = sum(size for _, size, _ in sized)
        removed = 0
        for _, size, shard in sorted(sized, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            shard.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def info(self) -> CacheInfo:
        shards = self._shards()
        vectors = 0
        size = 0
        for shard in shards:
            try:
                size += shard.stat().st_size
                with shard.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
                    vectors += len(data["sha256"])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                continue
        keys = len({shard.parent.name for shard in shards})
        return CacheInfo(self.root, keys, len(shards), vectors, size, self.max_bytes)

    def clear(self) -> int:
        """Remove every entry; the number of shards removed."""
        count = len(self._shards())
        shutil.rmtree(self.root / FORMAT, ignore_errors=True)
        return count


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # evicted meanwhile, or a read-only cache: the hit still counts
        pass
