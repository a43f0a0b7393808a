"""Reading and writing baseline directories.

    DIR/manifest.json    provenance (see manifest.py), the adapters and their vector files
    DIR/texts.jsonl      the texts, one JSON string per line
    DIR/<adapter>.npz    float32 arrays: `texts` (n, dim) and, when recorded, `retrieval`
    DIR/SHA256SUMS       sha256 of every file above (`sha256sum -c` reads it)

A directory is written (and fsynced) next to its destination and swapped into place under a
lock, so a crash leaves the old or the new baseline at DIR (swap.py says how); a replaced
baseline is kept as DIR.prev. Every problem found on reading is a BaselineError of one line
naming the file and what is wrong with it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.baseline.manifest import (
    CHECKSUMS,
    KIND,
    MANIFEST,
    SCHEMA_VERSION,
    TEXTS,
    environment,
    environment_diff,
    model_files,
    texts_sha256,
)
from parity.baseline.swap import Notify, baseline_lock, recover, replace_dir, to_stderr
from parity.errors import BaselineError, ParityInputError
from parity.files import sha256_bytes, sha256_file
from parity.metrics import METRICS
from parity.texts import iter_jsonl

REQUIRED_KEYS = ("schema", "tool_version", "created", "model", "environment", "texts", "adapters")
RETRY = "; recreate it with `parity baseline create --force`"


@dataclass
class Baseline:
    """A validated baseline: its manifest, texts and each adapter's vectors."""

    path: Path
    manifest: dict[str, Any]
    texts: list[str]
    vectors: dict[str, np.ndarray]
    retrieval_vectors: dict[str, np.ndarray]

    @property
    def adapters(self) -> list[dict[str, Any]]:
        return list(self.manifest["adapters"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def entry(self, label: str) -> dict[str, Any]:
        """The manifest's record of one adapter."""
        return next(e for e in self.manifest["adapters"] if e["label"] == label)

    def same_texts(self, texts: Sequence[str]) -> bool:
        return texts_sha256(texts) == self.manifest["texts"]["sha256"]

    def environment_diff(self, model_path: Path) -> dict[str, Any]:
        """Library versions and model files today against the manifest (see environment_diff)."""
        diff = environment_diff(
            self.manifest["environment"],
            environment(),
            self.manifest["model"]["files"],
            model_files(model_path),
        )
        diff["lines"] = diff["lines"] + self._own_model_lines()
        return diff

    def _own_model_lines(self) -> list[str]:
        """Changes in the model directories adapters loaded with model= (not the run's model)."""
        lines: list[str] = []
        for entry in self.adapters:
            record = entry.get("model") or {}
            if not record.get("files") or record.get("run_model"):
                continue
            own = Path(str(record.get("path")))
            if not own.is_dir():
                lines.append(f"{entry['label']}: model directory {own} is missing")
                continue
            changes = environment_diff({}, {}, record["files"], model_files(own))["lines"]
            lines += [f"{entry['label']}: {line}" for line in changes]
        return lines


def vector_file_name(label: str, taken: set[str]) -> str:
    """A portable file name for a label ("bcembedding:pooling=mean" -> "bcembedding-pooling-mean.npz")."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "adapter"
    name, n = f"{stem}.npz", 2
    while name in taken:
        name, n = f"{stem}-{n}.npz", n + 1
    taken.add(name)
    return name


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    as_float32: dict[str, Any] = {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()
    }
    np.savez(buffer, **as_float32)
    return buffer.getvalue()


def write_baseline(
    path: Path,
    manifest: dict[str, Any],
    texts: list[str],
    vectors: dict[str, np.ndarray],
    retrieval_vectors: dict[str, np.ndarray] | None = None,
    *,
    force: bool = False,
    notify: Notify = to_stderr,
) -> Path | None:
    """Write a baseline directory atomically; return where the replaced one was kept, if any.

    `manifest["adapters"]` entries name their `file`; `vectors` is keyed by adapter label.
    """
    path = Path(path).absolute()
    ensure_writable(path, force=force)
    files: dict[str, bytes] = {
        TEXTS: "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    }
    for entry in manifest["adapters"]:
        arrays = {"texts": vectors[entry["label"]]}
        if retrieval_vectors and entry["label"] in retrieval_vectors:
            arrays["retrieval"] = retrieval_vectors[entry["label"]]
        files[entry["file"]] = _npz_bytes(arrays)
    files[MANIFEST] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    files[CHECKSUMS] = "".join(
        f"{sha256_bytes(data)}  {name}\n" for name, data in sorted(files.items())
    ).encode("ascii")

    with baseline_lock(path, notify):
        ensure_writable(path, force=force)  # again: another writer may have made it meanwhile
        return replace_dir(path, files, notify)


def _looks_like_baseline(path: Path) -> bool:
    """A directory parity may replace: empty, or holding a (maybe damaged) baseline."""
    return path.is_dir() and (
        not any(path.iterdir()) or (path / MANIFEST).exists() or (path / CHECKSUMS).exists()
    )


def ensure_writable(path: Path, *, force: bool) -> None:
    """Refuse to replace an existing baseline unless asked to, and never replace anything else."""
    if not path.name or path.name in (".", ".."):
        raise BaselineError(f"{path}: give the baseline directory a name (e.g. baselines/minilm)")
    if not path.exists():
        return
    if not path.is_dir():
        raise BaselineError(f"{path}: exists and is not a directory; choose another --out")
    if not _looks_like_baseline(path):
        raise BaselineError(
            f"{path}: exists and is not a parity baseline (no {MANIFEST}); choose another --out"
        )
    if not force and any(path.iterdir()):
        raise BaselineError(
            f"{path}: a baseline already exists; pass --force to replace it "
            f"(the current one is kept as {path.name}.prev)"
        )
    previous = path.with_name(path.name + ".prev")
    if previous.exists() and not _looks_like_baseline(previous):
        raise BaselineError(
            f"{previous}: exists and is not a parity baseline; move it away before replacing {path}"
        )


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not path.is_dir():
        raise BaselineError(
            f"{path}: no baseline directory here; create one with `parity baseline create`"
        )
    if not file.is_file():
        raise BaselineError(f"{file}: missing; this is not a complete baseline" + RETRY)
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{file}: not UTF-8 text ({exc.reason})" + RETRY) from None
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{file}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}" + RETRY
        ) from None
    if not isinstance(manifest, dict):
        raise BaselineError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("kind", KIND) != KIND:
        raise BaselineError(f"{file}: kind {manifest.get('kind')!r} is not a parity baseline")
    schema = manifest.get("schema")
    if schema != SCHEMA_VERSION:
        raise BaselineError(
            f"{file}: unknown schema version {schema!r} (this parity reads {SCHEMA_VERSION}); "
            "use the parity version that wrote it, or recreate the baseline"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BaselineError(f"{file}: missing key(s) {', '.join(missing)}" + RETRY)
    _check_shape(file, manifest)
    tolerance = manifest.get("tolerance", {})
    if not isinstance(tolerance, dict) or any(
        key not in METRICS or not isinstance(value, (int, float)) or value < 0
        for key, value in tolerance.items()
    ):
        raise BaselineError(
            f"{file}: `tolerance` must map {', '.join(METRICS)} to numbers >= 0, got {tolerance!r}"
        )
    return manifest


def _check_shape(file: Path, manifest: dict[str, Any]) -> None:
    """Every object the reader relies on is there and of the right type."""

    def fail(what: str) -> BaselineError:
        return BaselineError(f"{file}: {what}" + RETRY)

    for key in ("model", "environment", "texts"):
        if not isinstance(manifest[key], dict):
            raise fail(f"`{key}` must be an object, got {type(manifest[key]).__name__}")
    if manifest.get("retrieval") is not None and not isinstance(manifest["retrieval"], dict):
        raise fail("`retrieval` must be an object or null")
    if not isinstance(manifest["model"].get("files"), dict):
        raise fail("`model.files` must be an object of file -> sha256")
    texts = manifest["texts"]
    if not isinstance(texts.get("count"), int) or not isinstance(texts.get("sha256"), str):
        raise fail("`texts` must hold an integer `count` and a `sha256` string")
    adapters = manifest["adapters"]
    if not isinstance(adapters, list) or not adapters:
        raise fail("`adapters` must be a non-empty list")
    labels: set[str] = set()
    files: set[str] = set()
    for number, entry in enumerate(adapters, 1):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("label", "name", "spec", "file")
        ):
            raise fail(f"adapter #{number} must be an object with label, name, spec and file")
        if not isinstance(entry.get("describe"), dict):
            raise fail(f"adapter {entry['label']!r} has no `describe` object")
        name = entry["file"]
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".npz"):
            raise fail(
                f"adapter {entry['label']!r}: `file` must be a plain .npz name, got {name!r}"
            )
        if entry["label"] in labels or name in files:
            raise fail(f"adapter {entry['label']!r} or its file {name!r} is listed twice")
        labels.add(entry["label"])
        files.add(name)


def _read_checksums(path: Path) -> dict[str, str]:
    file = path / CHECKSUMS
    if not file.is_file():
        raise BaselineError(f"{file}: missing; the baseline cannot be verified" + RETRY)
    sums: dict[str, str] = {}
    for number, line in enumerate(
        file.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if not match:
            raise BaselineError(
                f"{file} line {number}: expected '<sha256>  <file>', got {line[:60]!r}"
            )
        sums[match.group(2)] = match.group(1)
    return sums


def _verify_files(path: Path, manifest: dict[str, Any], sums: dict[str, str]) -> None:
    names = [MANIFEST, TEXTS, *(a["file"] for a in manifest["adapters"])]
    unknown = sorted(set(sums) - set(names))
    if unknown:
        raise BaselineError(
            f"{path / CHECKSUMS}: lists {', '.join(unknown)}, which the manifest does not name"
            + RETRY
        )
    for name in names:
        file = path / name
        if not file.is_file():
            raise BaselineError(f"{file}: missing" + RETRY)
        if name not in sums:
            raise BaselineError(f"{path / CHECKSUMS}: has no checksum for {name}" + RETRY)
        actual = sha256_file(file)
        if actual != sums[name]:
            raise BaselineError(
                f"{file}: checksum mismatch (SHA256SUMS says {sums[name][:12]}, the file hashes "
                f"to {actual[:12]}); it changed after the baseline was written" + RETRY
            )


def _read_texts(path: Path, manifest: dict[str, Any]) -> list[str]:
    file = path / TEXTS
    texts: list[str] = []
    try:
        lines = list(iter_jsonl(file))
    except ParityInputError as exc:
        raise BaselineError(str(exc)) from None
    for number, text in lines:
        if not isinstance(text, str):
            raise BaselineError(
                f"{file} line {number}: expected a string, got {type(text).__name__}"
            )
        texts.append(text)
    recorded = manifest["texts"]
    digest = texts_sha256(texts)
    if len(texts) != recorded.get("count") or digest != recorded.get("sha256"):
        raise BaselineError(
            f"{file}: a different text set ({len(texts)} texts, sha256 "
            f"{digest[:12]}) than the manifest records "
            f"({recorded.get('count')} texts, sha256 {str(recorded.get('sha256'))[:12]})" + RETRY
        )
    return texts


def _read_vectors(
    file: Path, n_texts: int, dim: int, n_retrieval: int | None
) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BaselineError(f"{file}: not a readable .npz file ({exc})") from None
    if "texts" not in arrays:
        raise BaselineError(f"{file}: has no `texts` array" + RETRY)
    for key, rows in (("texts", n_texts), ("retrieval", n_retrieval)):
        if key not in arrays:
            continue
        array = arrays[key]
        if array.ndim != 2:
            raise BaselineError(f"{file}: `{key}` has shape {array.shape}, expected (n, dim)")
        if array.shape[1] != dim:
            raise BaselineError(
                f"{file}: embedding dimension {array.shape[1]} in `{key}`, the manifest says {dim}"
            )
        if rows is not None and array.shape[0] != rows:
            raise BaselineError(f"{file}: {array.shape[0]} vectors in `{key}` for {rows} texts")
    return arrays


def load_baseline(path: str | Path, notify: Notify = to_stderr) -> Baseline:
    """Read and verify a baseline directory: schema, checksums, text set, shapes (finishing an
    interrupted replace first, see swap.py)."""
    path = Path(path)
    recover(path, notify)
    manifest = _read_manifest(path)
    _verify_files(path, manifest, _read_checksums(path))
    texts = _read_texts(path, manifest)
    dim = manifest.get("dim")
    if not isinstance(dim, int) or dim <= 0:
        raise BaselineError(f"{path / MANIFEST}: `dim` must be a positive integer, got {dim!r}")
    retrieval = manifest.get("retrieval") or {}
    n_retrieval = retrieval.get("texts") if retrieval else None
    vectors: dict[str, np.ndarray] = {}
    retrieval_vectors: dict[str, np.ndarray] = {}
    for entry in manifest["adapters"]:
        arrays = _read_vectors(path / entry["file"], len(texts), dim, n_retrieval)
        vectors[entry["label"]] = arrays["texts"]
        if "retrieval" in arrays:
            retrieval_vectors[entry["label"]] = arrays["retrieval"]
    return Baseline(path, manifest, texts, vectors, retrieval_vectors)
