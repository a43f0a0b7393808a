"""summary.json: the machine-readable result that CI scripts and later stages rely on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parity.compare import Comparison
from parity.errors import ParityInputError
from parity.files import os_reason, write_atomic
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
    """Write summary.json and report.md into out_dir (each atomically); a directory that cannot be
    written is the user's to fix (ParityInputError naming it and the reason), not a crash."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ParityInputError(
            f"{out_dir}: cannot write the report there: it is a file, not a directory; "
            "give --out a directory (it is created if missing)"
        )
    try:
        write_json(out_dir / "summary.json", summary)
        write_atomic(out_dir / "report.md", markdown)
    except OSError as exc:
        where = exc.filename or out_dir
        raise ParityInputError(
            f"{where}: cannot write the report: {os_reason(exc)}; give --out a writable directory"
        ) from exc


def error_summary(error: str, exit_code: int, warnings: list[dict[str, str]]) -> dict[str, Any]:
    """The summary.json of a command that ended in an error (exit 2) or a crash (exit 3): it says
    "passed": false and why, under the same schema as a finished run's."""
    return {
        "schema": SCHEMA_VERSION,
        "tool_version": __version__,
        "passed": False,
        "error": " ".join(error.split()),
        "exit_code": exit_code,
        "warnings": list(warnings),
    }
