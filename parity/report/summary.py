"""summary.json: the machine-readable result that CI scripts and later stages rely on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.compare import Comparison, PairResult
from parity.errors import ParityInputError
from parity.files import os_reason, write_atomic
from parity.metrics import json_float
from parity.version import __version__

if TYPE_CHECKING:
    import pandas as pd

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
    frame: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The summary.json contract: passed, tolerance, adapters, pairs (+ any extra keys). Each
    pair's counts and statistics come from the per-text frame (results.parquet), built from the
    comparison when not given, so the two files cannot disagree."""
    from parity.report.results import results_frame

    if frame is None:
        frame = results_frame(comparison)
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "tool_version": __version__,
        "passed": comparison.passed,
        "model": model,
        "n_texts": n_texts,
        "tolerance": comparison.tolerance.as_dict(),
        "adapters": adapters,
        "pairs": pair_dicts(comparison, frame),
    }
    summary.update(extra or {})
    cleaned: dict[str, Any] = _clean(summary)
    return cleaned


def pair_dicts(comparison: Comparison, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each pair's summary.json entry, its n, failures, stats, min_tolerance and decided_by
    computed from the frame's rows of that pair."""
    from parity.report.results import pair_name, pair_stats

    by_pair = pair_stats(frame, comparison.tolerance)
    return [_from_frame(pair, by_pair[pair_name(pair.a, pair.b)]) for pair in comparison.pairs]


def _from_frame(pair: PairResult, rows: dict[str, Any]) -> dict[str, Any]:
    entry = pair.as_dict()
    stats = rows["stats"]
    entry.update(
        n=rows["n"],
        failures=rows["failures"],
        stats={m: s.as_dict() for m, s in stats.items()},
        min_tolerance={m: json_float(s.max) for m, s in stats.items()},
        decided_by=rows["decided_by"],
    )
    return entry


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
