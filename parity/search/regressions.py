"""fixtures/regressions.jsonl: every divergence a search found, checked again on every run."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError
from parity.files import write_atomic
from parity.texts import iter_jsonl

DEFAULT_PATH = Path("fixtures/regressions.jsonl")


def read_regressions(path: Path = DEFAULT_PATH) -> list[dict[str, Any]]:
    """The recorded examples (an absent file is an empty corpus)."""
    if not path.is_file():
        return []
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ParityInputError(f"{path} line {number}: expected an object with a 'text' string")
        records.append(record)
    return records


def append_regression(
    text: str, adapters: Sequence[str], metrics: dict[str, float], path: Path = DEFAULT_PATH
) -> bool:
    """Add one example unless the same text for the same adapters is already there."""
    records = read_regressions(path)
    key = (text, sorted(adapters))
    if any((r["text"], sorted(r.get("adapters", []))) == key for r in records):
        return False
    records.append(
        {
            "text": text,
            "adapters": list(adapters),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "date": dt.date.today().isoformat(),
        }
    )
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return True


def regression_texts(path: Path = DEFAULT_PATH) -> list[str]:
    return list(dict.fromkeys(r["text"] for r in read_regressions(path)))
