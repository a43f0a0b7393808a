"""fixtures/regressions.jsonl: every divergence a search found, checked again on every run.

Each entry records the model it was found on (`model_identity()`): a text that diverges on a
byte-level BPE tokenizer says nothing about a WordPiece model, so replay keeps only the entries
of the model under test. Entries written before models were recorded (no "model" key) are
replayed on every model, as they always were: dropping them could hide a real regression.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError
from parity.files import write_atomic
from parity.modelinfo import BUNDLED_REFERENCE, is_bundled
from parity.texts import iter_jsonl

DEFAULT_PATH = Path("fixtures/regressions.jsonl")

IDENTITY_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)
"""The files that make a model what it is for a regression, apart from the weights (large)."""


def model_identity(model: str | Path) -> str:
    """A reference to a model directory that survives a machine move.

    `bundled:all-MiniLM-L6-v2` for the bundled model, else `<directory name>@<digest>`, the
    digest a sha256 (first 12 hex digits) over the configuration and tokenizer files present."""
    path = Path(model)
    if is_bundled(path):
        return BUNDLED_REFERENCE
    digest = hashlib.sha256()
    for name in IDENTITY_FILES:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return f"{path.name}@{digest.hexdigest()[:12]}"


def read_regressions(path: Path = DEFAULT_PATH) -> list[dict[str, Any]]:
    """The recorded examples (an absent file is an empty corpus)."""
    if not path.is_file():
        return []
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ParityInputError(f"{path} line {number}: expected an object with a 'text' string")
        if not isinstance(record.get("model", ""), str):
            raise ParityInputError(
                f"{path} line {number}: 'model' must be a string such as {BUNDLED_REFERENCE!r}"
            )
        records.append(record)
    return records


def append_regression(
    text: str,
    adapters: Sequence[str],
    metrics: dict[str, float],
    path: Path = DEFAULT_PATH,
    *,
    model: str | None = None,
) -> bool:
    """Add one example found on `model` (a model_identity()) unless the same text for the same
    adapters and model is already there."""
    records = read_regressions(path)
    key = (text, sorted(adapters), model)
    if any((r["text"], sorted(r.get("adapters", [])), r.get("model")) == key for r in records):
        return False
    record: dict[str, Any] = {"text": text, "adapters": list(adapters)}
    if model is not None:
        record["model"] = model
    record["metrics"] = {k: float(v) for k, v in metrics.items()}
    record["date"] = dt.date.today().isoformat()
    records.append(record)
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return True


def regression_texts(path: Path = DEFAULT_PATH, *, model: str | None = None) -> list[str]:
    """The distinct texts to replay on `model` (a model_identity()): its own entries and those
    recorded without a model. With model=None, every entry."""
    return list(
        dict.fromkeys(
            r["text"]
            for r in read_regressions(path)
            if model is None or r.get("model") in (None, model)
        )
    )
