"""summary.json: the machine-readable result that CI scripts and later stages rely on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parity.compare import Comparison
from parity.files import write_atomic
from parity.version import __version__

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null, numpy scalars become Python numbers, paths become str."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return _clean(value.item())
    return value


def build_summary(
    comparison: Comparison,
    adapters: list[dict[str, Any]],
    *,
    model: str,
    n_texts: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary.json contract: passed, tolerance, adapters, pairs (+ any extra keys)."""
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "tool_version": __version__,
        "passed": comparison.passed,
        "model": model,
        "n_texts": n_texts,
        "tolerance": comparison.tolerance.as_dict(),
        "adapters": adapters,
        "pairs": [pair.as_dict() for pair in comparison.pairs],
    }
    summary.update(extra or {})
    cleaned: dict[str, Any] = _clean(summary)
    return cleaned


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(_clean(data), indent=2, ensure_ascii=False) + "\n")


def write_outputs(out_dir: Path, summary: dict[str, Any], markdown: str) -> None:
    """Write summary.json and report.md into out_dir (each atomically)."""
    write_json(out_dir / "summary.json", summary)
    write_atomic(out_dir / "report.md", markdown)
