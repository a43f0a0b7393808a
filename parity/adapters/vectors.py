"""`vectors`: precomputed vectors as a side (exported from an index), looked up by text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.adapters.base import Adapter, Option
from parity.errors import AdapterError, SpecError
from parity.files import sha256_file, text_sha256

TEXT_COLUMNS = ("text", "sha256", "text_sha256")
VECTOR_COLUMNS = ("vector", "embedding", "vectors", "embeddings")


def _pick(names: list[str], wanted: tuple[str, ...], path: Path, what: str) -> str:
    for name in wanted:
        if name in names:
            return name
    raise AdapterError(
        f"{path}: no {what} column or array (looked for {', '.join(wanted)}; found "
        f"{', '.join(names) or 'nothing'})"
    )


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray, bool]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    key = _pick(table.column_names, TEXT_COLUMNS, path, "text or sha256")
    column = _pick(table.column_names, VECTOR_COLUMNS, path, "vector")
    vectors = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    return [str(k) for k in table.column(key).to_pylist()], vectors, key == "text"


def _read_npz(path: Path) -> tuple[list[str], np.ndarray, bool]:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.files)
        key = _pick(names, TEXT_COLUMNS, path, "texts or sha256")
        column = _pick(names, VECTOR_COLUMNS, path, "vectors")
        return [str(k) for k in data[key].tolist()], np.asarray(data[column]), key == "text"


class VectorsAdapter(Adapter):
    """Vectors computed elsewhere, e.g. exported from the index a new stack must reproduce.

    The file holds one row per text: the text itself or its UTF-8 sha256 (hex), and its vector.
    `embed()` looks each text up; a text the file does not have is an input error naming it."""

    name = "vectors"
    summary = "precomputed vectors from a .parquet (text|sha256, vector) or .npz file"
    model_is_path = False  # model= is only a name recorded in describe()
    cacheable = False  # nothing to compute: the file is the cache
    requires = ("numpy", "pyarrow")
    install_hint = "pip install pyarrow"
    distributions = ("numpy", "pyarrow")
    fixed_texts = True  # holds only the texts it was exported with: no retrieval set
    options: ClassVar[dict[str, Option]] = {
        "path": Option(
            "",
            "the vectors file (required): .parquet (columns text or sha256, and vector) or .npz",
            required=True,
        ),
    }

    def __init__(self, model: str | Path, *, label: str | None = None, **config: Any) -> None:
        super().__init__(model, label=label, **config)
        if not self.config["path"]:
            raise SpecError("vectors: path= is required (vectors:path=FILE.parquet or FILE.npz)")

    def _load(self) -> None:
        path = Path(self.config["path"]).expanduser()
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise AdapterError(f"{self.label}: path={str(path)!r} {what}; give the exported file")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise AdapterError(
                f"{self.label}: cannot read path={str(path)!r} ({exc.strerror})"
            ) from None
        if path.suffix not in (".parquet", ".npz"):
            raise AdapterError(
                f"{path}: expected a .parquet or .npz file (a bare .npy has no texts to match "
                "vectors to: save both with numpy.savez(FILE, sha256=..., vectors=...))"
            )
        keys, vectors, by_text = (_read_parquet if path.suffix == ".parquet" else _read_npz)(path)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise AdapterError(
                f"{path}: expected one vector per row, got {len(keys)} keys and vectors of "
                f"shape {vectors.shape}"
            )
        self.path = path
        self.file_sha256 = sha256_file(path)
        self.by_text = by_text
        self.rows = {key: row for row, key in enumerate(keys)}
        self.vectors = vectors

    def _embed(self, texts: list[str]) -> np.ndarray:
        keys = texts if self.by_text else [text_sha256(t) for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in self.rows]
        if missing:
            # the runner embeds in chunks of its own order: a position in this call would
            # mislead, so name the text itself and its sha256 (what a sha256 export is keyed by)
            first = texts[missing[0]]
            raise AdapterError(
                f"{self.label}: {len(missing)} of the {len(texts)} texts embedded in this call "
                f"are not in {self.path}, first {first[:60]!r} (sha256 {text_sha256(first)}); "
                "export vectors for these texts, or run on the texts you exported"
            )
        return self.vectors[[self.rows[key] for key in keys]]

    def _describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "file_sha256": self.file_sha256,
            "rows": len(self.rows),
            "keyed_by": "text" if self.by_text else "sha256",
            "dim": int(self.vectors.shape[1]),
            "served_model": self.model or None,
        }
