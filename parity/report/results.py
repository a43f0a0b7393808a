"""results.parquet: every per-text figure of a run as one tidy pandas frame (a row per text and pair)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from parity.errors import ParityInputError
from parity.files import os_reason, replacing
from parity.metrics import DIMENSION, METRICS, NON_FINITE, MetricStats, Tolerance

if TYPE_CHECKING:
    from parity.compare import Comparison, PairResult

RESULTS_FILE = "results.parquet"
CSV_FILE = "results.csv"
COLUMNS = (
    "text_id",
    "text",
    "pair",
    "a",
    "b",
    *METRICS,
    "passed",
    "deciding_metric",
    "cause",
    "evidence",
    "tokens_a",
    "tokens_b",
)
Tokens = Mapping[str, "list[list[str]] | None"]


def pair_name(a: str, b: str) -> str:
    """How a pair is named in the frame, the reports and JUnit: "a vs b"."""
    return f"{a} vs {b}"


def results_frame(comparison: Comparison, tokens: Tokens | None = None) -> pd.DataFrame:
    """One row per text and pair: the metrics, the verdict, the metric that decided a failing
    text (the one furthest over its tolerance, or "non-finite"), the diagnosed cause of a failing
    text with its evidence, and each side's token count (missing where the adapter cannot say)."""
    frames = [_pair_frame(pair, tokens or {}) for pair in comparison.pairs]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _pair_frame(pair: PairResult, tokens: Tokens) -> pd.DataFrame:
    n = pair.n
    frame = pd.DataFrame(
        {
            "text_id": np.arange(n, dtype=np.int64),
            "text": pd.Series(list(pair.texts), dtype=object),
            "pair": pair_name(pair.a, pair.b),
            "a": pair.a,
            "b": pair.b,
            **{m: np.asarray(pair.per_text[m], dtype=np.float64) for m in METRICS},
            "passed": ~np.asarray(pair.failing, dtype=bool),
        }
    )
    frame["deciding_metric"] = _deciding(frame, pair)
    causes, evidence = _text_causes(pair)
    frame["cause"] = pd.Series(causes, dtype=object)
    frame["evidence"] = pd.Series(evidence, dtype=object)
    frame["tokens_a"] = _token_counts(tokens.get(pair.a), n)
    frame["tokens_b"] = _token_counts(tokens.get(pair.b), n)
    return frame


def _deciding(frame: pd.DataFrame, pair: PairResult) -> pd.Series:
    """For each failing text, the metric furthest over its tolerance (as a ratio); None if passed;
    "dimension" on every text of a pair whose sides return vectors of different lengths."""
    if pair.dimensions:
        return pd.Series([DIMENSION] * len(frame), dtype=object)
    active = list(pair.tolerance.active())
    ratios = pd.DataFrame({m: frame[m] / getattr(pair.tolerance, m) for m in active})
    nan = frame[METRICS[0]].isna()
    if active and len(frame):
        worst = ratios.fillna(-np.inf).idxmax(axis=1).astype(object)
    else:
        worst = pd.Series([None] * len(frame), dtype=object)
    deciding = worst.where(~frame["passed"], None)
    deciding[nan] = NON_FINITE
    return deciding


def _text_causes(pair: PairResult) -> tuple[list[str | None], list[str | None]]:
    """Each failing text's cause (name+also) and evidence from the pair's diagnosis (a cause
    lists every text it explained; summary.json shows only the first 50)."""
    causes: list[str | None] = [None] * pair.n
    evidence: list[str | None] = [None] * pair.n
    failing = pair.failing_indices()
    if len(pair.causes) == 1 and pair.causes[0].get("explained") == len(failing):
        listed: list[tuple[dict[str, Any], list[int]]] = [(pair.causes[0], failing)]
    else:
        listed = [(c, list(c.get("indices", []))) for c in pair.causes]
    for cause, indices in listed:
        name = "+".join([cause["cause"], *cause.get("also", [])])
        for index in indices:
            if 0 <= index < pair.n:
                causes[index], evidence[index] = name, cause.get("evidence", "measured")
    return causes, evidence


def _token_counts(token_lists: list[list[str]] | None, n: int) -> pd.Series:
    if token_lists is None or len(token_lists) != n:
        return pd.Series([pd.NA] * n, dtype="Int64")
    return pd.Series([len(t) for t in token_lists], dtype="Int64")


def write_results(out_dir: Path, frame: pd.DataFrame, *, csv: bool = False) -> list[Path]:
    """Write results.parquet (and results.csv with csv=True, else remove one an earlier run left)
    into out_dir; return the paths. Each goes through a temp file of its own (two runs into one
    --out never share one) renamed over the target."""
    paths = [out_dir / RESULTS_FILE] + ([out_dir / CSV_FILE] if csv else [])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not csv:  # an earlier --csv run's rows must not outlive this run's verdict
            (out_dir / CSV_FILE).unlink(missing_ok=True)
        for path in paths:
            _write_via_temp(path, frame)
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or out_dir}: cannot write the per-text results: {os_reason(exc)}; "
            "give --out a writable directory"
        ) from exc
    return paths


def _write_via_temp(path: Path, frame: pd.DataFrame) -> None:
    """As files.write_atomic: a unique temp file beside `path`, renamed over it."""
    with replacing(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def load_results(directory: str | Path) -> pd.DataFrame:
    """The per-text results of a run, diagnose, fuzz or gate written with --out DIR:
    one row per text and pair (see COLUMNS), as a pandas DataFrame."""
    path = Path(directory).expanduser()
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ParityInputError(
            f"{path}: no per-text results there; run `parity run ... --out DIR` and pass that DIR"
        )
    return pd.read_parquet(path)


def pair_stats(frame: pd.DataFrame, tolerance: Tolerance) -> dict[str, dict[str, Any]]:
    """What summary.json says of each pair, computed from the frame: n, failures, per-metric
    statistics (max, mean, p50, p99; NaN throughout when a row is NaN) and decided_by (per metric
    in force, the failing texts over its tolerance; a text over several counts under each)."""
    out: dict[str, dict[str, Any]] = {}
    for name, rows in frame.groupby("pair", sort=False):
        nan = rows[METRICS[0]].isna()
        decided = {
            m: int((~nan & (rows[m] > getattr(tolerance, m))).sum()) for m in tolerance.active()
        }
        dimension = int((rows["deciding_metric"] == DIMENSION).sum())
        if dimension:  # as PairResult.decided_by: every text, for one reason no metric measures
            decided = {**dict.fromkeys(decided, 0), DIMENSION: dimension}
        out[str(name)] = {
            "n": len(rows),
            "failures": int((~rows["passed"]).sum()),
            "stats": {m: MetricStats.of(rows[m].to_numpy(dtype=np.float64)) for m in METRICS},
            "decided_by": {**decided, NON_FINITE: int(nan.sum())},
        }
    return out
