"""A content-addressed, size-bounded on-disk cache of embeddings, safe under concurrent runs.

Layout: ROOT/v1/<key>/<shard>.npz, one shard per store() (the texts' sha256 and their float32
vectors). `key` digests everything that decides a vector except the text: the adapter's effective
configuration (describe(), library versions and device included), its model files' hashes and
the platform. A shard is written to a temp file, fsynced and renamed, so a reader sees a whole
shard or none; one that does not load (a damaged disk) is removed and counts as a miss. Reading a
shard touches its mtime; past `max_bytes`, the least recently used shards go first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import platform
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.files import os_reason, sha256_file, write_atomic

DEFAULT_DIR = ".parity-cache"
# PARITY_CACHE=DIR moves the default cache; PARITY_CACHE=off turns it off (the test suite does)
ENV = "PARITY_CACHE"
DEFAULT_MAX_BYTES = 2 << 30
STALE_TEMP_SECONDS = 3600  # a temp shard this old belongs to no live writer
FORMAT = "v1"
BLOB = "run.zip"  # a remembered run's outputs (parity.remember), beside the vector shards
# describe() keys that name a run, not what the adapter computes
_NOT_KEYED = ("label", "model")

_model_digests: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def model_stamp(model: str | Path) -> tuple[tuple[str, int, int], ...]:
    """A model directory's files as (relative path, size, mtime): cheap, and different once
    any file is rewritten; () for a served model name."""
    root = Path(model)
    if not str(model) or not root.is_dir():
        return ()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return tuple((p.relative_to(root).as_posix(), *_size_mtime(p)) for p in files)


def model_digest(model: str | Path) -> str | None:
    """sha256 over a model directory's files (path and content), or None when `model` is not
    a directory (a served model name); memoized per file list, sizes and mtimes."""
    root = Path(model)
    if not str(model) or not root.is_dir():
        return None
    stamp = model_stamp(root)
    memo = (str(root.resolve()), stamp)
    if memo not in _model_digests:
        digest = hashlib.sha256()
        for relative, _, _ in stamp:
            digest.update(f"{relative}\0{sha256_file(root / relative)}\n".encode())
        _model_digests[memo] = digest.hexdigest()
    return _model_digests[memo]


def _size_mtime(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.cache
def adapter_code(cls: type) -> str:
    """What identifies the code that embeds: the class, parity's version, the version of the
    distribution the class comes from (a plugin's), and a digest of the source of every class
    in its hierarchy (an edited backend or plugin in an editable install embeds differently)."""
    from parity.version import __version__

    digest = hashlib.sha256()
    for klass in cls.__mro__:
        source = _source_file(klass)
        if source is not None:
            digest.update(f"{klass.__module__}\0".encode() + source.read_bytes())
    top = cls.__module__.partition(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    versions = sorted({f"{d} {_version(d)}" for d in dists})  # one entry per name: a source
    # checkout on sys.path lists its distribution twice (its .egg-info and the installed one)
    return (
        f"{cls.__module__}.{cls.__qualname__} parity {__version__} {versions} {digest.hexdigest()}"
    )


def _source_file(klass: type) -> Path | None:
    try:
        found = inspect.getsourcefile(klass)
    except TypeError:  # a builtin (object)
        return None
    return Path(found) if found and Path(found).is_file() else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def accelerator(device: Any) -> str | None:
    """The GPU behind a CUDA device (name, compute capability, CUDA runtime), which the OS name
    in the key does not tell apart; None on the CPU."""
    if not str(device or "cpu").startswith("cuda") or "torch" not in sys.modules:
        return None
    torch = sys.modules["torch"]
    try:
        index = torch.device(str(device)).index or 0
        props = torch.cuda.get_device_properties(index)
        return f"{props.name} sm{props.major}{props.minor} cuda {torch.version.cuda}"
    except Exception:  # no usable CUDA here: the adapter's own load will say so
        return "cuda (unknown)"


def cache_key(describe: Mapping[str, Any], model: str | Path, code: str) -> str:
    """The key of an adapter's vectors: its effective configuration, model files, platform and
    accelerator, and `code` (adapter_code: the code that embeds)."""
    files = model_digest(model)
    material = {
        "code": code,
        "accelerator": accelerator(describe.get("device")),
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
    runs: int = 0

    def lines(self) -> list[str]:
        return [
            f"cache: {self.root}",
            f"adapters/configurations: {self.keys}",
            f"shards: {self.shards}, vectors: {self.vectors}",
            f"remembered runs: {self.runs}",
            f"size: {self.bytes / 1e6:.1f} MB of {self.max_bytes / 1e6:.0f} MB",
        ]


class EmbeddingCache:
    """Vectors by (key, text sha256). Never raises on a damaged or vanished entry: a miss."""

    def __init__(self, root: str | Path = DEFAULT_DIR, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        # per key: each text hash's shard, read once; only for lookups no shard name answers
        self._index: dict[str, dict[str, Path]] = {}
        self._dead: set[Path] = set()  # shards found damaged or gone

    def _dir(self, key: str) -> Path:
        return self.root / FORMAT / key

    def lookup(self, key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vector of each hash that has one. The shard store() would have written
        for exactly these texts is read first (a streamed run's chunk, the same again); only
        when it misses some are the shards holding them found, through a per-key index."""
        wanted = set(hashes)
        found: dict[str, np.ndarray] = {}
        self._take(self._dir(key) / _shard_name(list(dict.fromkeys(hashes))), wanted, found)
        if len(found) < len(wanted):
            index = self._shard_index(key)
            for shard in sorted({index[h] for h in wanted - set(found) if h in index}):
                self._take(shard, wanted, found)
        return found

    def _take(self, shard: Path, wanted: set[str], found: dict[str, np.ndarray]) -> None:
        """Add the vectors of `shard` that are wanted and not found yet."""
        if shard in self._dead or not shard.is_file():
            return
        loaded = self._read(shard)
        if loaded is None:  # damaged or evicted meanwhile: a miss from now on
            self._dead.add(shard)
            return
        shard_hashes, vectors = loaded
        for row, digest in enumerate(shard_hashes):
            if digest in wanted and digest not in found:
                found[digest] = vectors[row]
        _touch(shard)

    def _shard_index(self, key: str) -> dict[str, Path]:
        """Which shard held each text hash under `key` when first asked (built from the shards'
        hash lists once; shards written later, here or by another run, are not in it: a
        lookup of exactly their texts finds them by name, any other is a miss, never an error)."""
        if key not in self._index:
            index: dict[str, Path] = {}
            folder = self._dir(key)
            for shard in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
                for digest in self._read_hashes(shard):
                    index.setdefault(digest, shard)
            self._index[key] = index
        return self._index[key]

    def _read_hashes(self, shard: Path) -> list[str]:
        """A shard's text hashes alone (npz members load one by one); [] when it is unreadable."""
        members = self._members(shard, ("sha256",))
        return [] if members is None else [str(h) for h in members["sha256"].tolist()]

    def _read(self, shard: Path) -> tuple[list[str], np.ndarray] | None:
        members = self._members(shard, ("sha256", "vectors"))
        if members is None:
            return None
        hashes = [str(h) for h in members["sha256"].tolist()]
        vectors = members["vectors"].astype(np.float32, copy=False)
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            shard.unlink(missing_ok=True)
            return None
        return hashes, vectors

    def _members(self, shard: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The named arrays of a shard; None when another run evicted it meanwhile, or when it
        is damaged (then removed: never read again)."""
        try:
            # our own handle: np.load leaves its file open when a damaged archive raises
            with shard.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
                return {name: np.asarray(data[name]) for name in names}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            shard.unlink(missing_ok=True)
            return None

    def store(self, key: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors (one row per hash) under `key`, then evict past the size bound."""
        if not len(hashes):
            return
        buffer = io.BytesIO()
        np.savez(buffer, sha256=np.asarray(hashes), vectors=np.asarray(vectors, np.float32))
        shard = self._dir(key) / _shard_name(hashes)
        try:
            write_atomic(shard, buffer.getvalue())
            self._dead.discard(shard)  # written again: whole and readable
            self.evict()
        except OSError as exc:  # a read-only or full disk costs the cache, never the run
            warnings.warn(
                f"embedding cache {self.root}: cannot write ({os_reason(exc)}); this run's "
                "vectors are not cached (--cache DIR elsewhere, or --no-cache)",
                RuntimeWarning,
                stacklevel=2,
            )

    def read_blob(self, key: str) -> bytes | None:
        """The bytes stored under `key` with store_blob (a remembered run), or None."""
        path = self._dir(key) / BLOB
        try:
            data = path.read_bytes()
        except OSError:
            return None
        _touch(path)
        return data

    def store_blob(self, key: str, data: bytes) -> None:
        """Keep `data` under `key`, whole or not at all (as a shard), then evict past the bound."""
        try:
            write_atomic(self._dir(key) / BLOB, data)
            self.evict()
        except OSError as exc:
            warnings.warn(
                f"embedding cache {self.root}: cannot write ({os_reason(exc)}); this run is "
                "not remembered (--cache DIR elsewhere, or --no-cache)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _shards(self) -> list[Path]:
        base = self.root / FORMAT
        return list(base.glob("*/*.npz")) if base.is_dir() else []

    def _blobs(self) -> list[Path]:
        base = self.root / FORMAT
        return list(base.glob(f"*/{BLOB}")) if base.is_dir() else []

    def evict(self) -> int:
        """Remove least recently used shards until the cache is within its bound (and temp files
        a killed run left over an hour ago); how many shards."""
        for tmp in (self.root / FORMAT).glob("*/.*"):
            with contextlib.suppress(OSError):
                if time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                    tmp.unlink()
        sized = []
        for shard in [*self._shards(), *self._blobs()]:
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
        runs = self._blobs()
        for run in runs:
            with contextlib.suppress(OSError):
                size += run.stat().st_size
        return CacheInfo(self.root, keys, len(shards), vectors, size, self.max_bytes, len(runs))

    def clear(self) -> int:
        """Remove every entry; how many vector shards and remembered runs were removed."""
        count = len(self._shards()) + len(self._blobs())
        shutil.rmtree(self.root / FORMAT, ignore_errors=True)
        self._index, self._dead = {}, set()
        return count


def _shard_name(hashes: Sequence[str]) -> str:
    """The file store() writes for these text hashes (in this order)."""
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:32] + ".npz"


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # evicted meanwhile, or a read-only cache: the hit still counts
        pass
