"""Per-text metrics between two embedding matrices, and the tolerances they are held to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parity.errors import ComparisonError, ParityInputError

# Every metric is computed for every text; rel_euclidean (||a-b|| / ||a||, a = the pair's first
# side) is off (tolerance inf) unless --tol names it, so the three absolute metrics decide by default.
METRICS: tuple[str, ...] = ("max_abs", "cosine", "euclidean", "rel_euclidean")
ABSOLUTE_METRICS: tuple[str, ...] = ("max_abs", "cosine", "euclidean")  # what a bare --tol sets
NON_FINITE = "non-finite"  # decided_by / failed_metrics entry for a NaN or Inf row
DIMENSION = "dimension"  # decided_by / failed_metrics entry when the sides' dimensions differ
DEFAULT_TOL = 5e-3


@dataclass(frozen=True)
class Tolerance:
    """Per-metric tolerances; a text fails when any metric exceeds its tolerance."""

    max_abs: float = DEFAULT_TOL
    cosine: float = DEFAULT_TOL
    euclidean: float = DEFAULT_TOL
    rel_euclidean: float = math.inf  # off unless asked for

    @classmethod
    def parse(cls, specs: str | Sequence[str] | None, base: Tolerance | None = None) -> Tolerance:
        """Parse `--tol 5e-3` (sets max_abs, cosine and euclidean) or
        `--tol rel_euclidean=1e-2,euclidean=off` (repeatable; `off` never fails a text); metrics
        not named keep their value in `base` (default: 5e-3 each, rel_euclidean off)."""
        base = base or cls()
        if specs is None:
            return base
        if isinstance(specs, str):
            specs = [specs]
        values = {m: getattr(base, m) for m in METRICS}
        for spec in specs:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                key, sep, raw = part.rpartition("=")
                keys = ABSOLUTE_METRICS if not sep else (key.strip(),)
                for k in keys:
                    if k not in values:
                        raise ParityInputError(
                            f"--tol: unknown metric {k!r}; choose from {', '.join(METRICS)}"
                        )
                    values[k] = _parse_tol_value(raw, part)
        return cls(**values)

    @classmethod
    def from_dict(cls, recorded: Mapping[str, float] | None) -> Tolerance:
        """A tolerance as as_dict() recorded it (baseline manifest, summary.json): a metric left
        out was off, so {} is every metric off (`--tol off`); None (nothing recorded) means the
        defaults."""
        if recorded is None:
            return cls()
        return cls(**{m: float(recorded.get(m, math.inf)) for m in METRICS})

    def active(self) -> tuple[str, ...]:
        """The metrics that can fail a text (those with a finite tolerance)."""
        return tuple(m for m in METRICS if not math.isinf(getattr(self, m)))

    def as_dict(self) -> dict[str, float]:
        """The tolerances in force; a metric that is off is left out, so the default is exactly
        {max_abs, cosine, euclidean} and an older reader (or baseline) sees what it knows."""
        return {m: getattr(self, m) for m in self.active()}

    def within(self, per_text: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per text: every metric finite and at or below its tolerance."""
        ok = np.ones(len(per_text[METRICS[0]]), dtype=bool)
        for m in METRICS:
            ok &= ~np.isnan(per_text[m]) & (per_text[m] <= getattr(self, m))
        return ok


def _parse_tol_value(raw: str, part: str) -> float:
    if raw.strip().lower() == "off":
        return math.inf
    try:
        value = float(raw)
    except ValueError:
        raise ParityInputError(f"--tol {part!r}: {raw!r} is not a number") from None
    if not value >= 0 or math.isinf(value):
        raise ParityInputError(f"--tol {part!r}: a tolerance must be a finite number >= 0, or off")
    return value


def deltas(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row max-abs, cosine distance (1 - cos), Euclidean distance and relative Euclidean
    distance ||a-b|| / ||a|| between a and b.

    Computed in float64. A row with NaN/Inf on either side gets NaN in every metric.
    A zero vector has cosine distance 1 to anything but another zero vector (0); a zero row of
    `a` has rel_euclidean 0 against another zero row and inf against anything else.
    """
    if a.ndim != 2 or b.ndim != 2:
        raise ComparisonError(f"expected 2-d arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ComparisonError(f"different numbers of vectors: {a.shape[0]} vs {b.shape[0]}")
    if a.shape[1] != b.shape[1]:
        raise ComparisonError(
            f"embedding dimensions differ: {a.shape[1]} vs {b.shape[1]}; "
            "the adapters do not load the same model (or one truncates its output)"
        )
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    finite = np.asarray(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    x = np.where(finite[:, None], x, 0.0)
    y = np.where(finite[:, None], y, 0.0)
    diff = x - y
    max_abs = np.abs(diff).max(axis=1) if diff.shape[1] else np.zeros(len(diff))
    euclidean = np.linalg.norm(diff, axis=1)
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    both_zero = (nx == 0) & (ny == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (x * y).sum(axis=1) / (nx * ny)
    cosine = np.where(both_zero, 0.0, np.where((nx == 0) | (ny == 0), 1.0, 1.0 - cos))
    cosine = np.clip(cosine, 0.0, 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(nx > 0, euclidean / nx, np.where(euclidean > 0, np.inf, 0.0))
    out = {"max_abs": max_abs, "cosine": cosine, "euclidean": euclidean, "rel_euclidean": relative}
    for values in out.values():
        values[~finite] = np.nan
    return out


@dataclass
class MetricStats:
    """Summary of one metric over all texts of a pair."""

    max: float
    mean: float
    p50: float
    p99: float

    @classmethod
    def of(cls, values: np.ndarray) -> MetricStats:
        if values.size == 0:
            return cls(0.0, 0.0, 0.0, 0.0)
        if np.isnan(values).any():
            nan = float("nan")
            return cls(nan, nan, nan, nan)
        with np.errstate(invalid="ignore"):  # inf - inf between two inf rel_euclidean values
            p50, p99 = (float(np.percentile(values, q)) for q in (50, 99))
        p50, p99 = (math.inf if math.isnan(p) else p for p in (p50, p99))
        return cls(float(values.max()), float(values.mean()), p50, p99)

    def as_dict(self) -> dict[str, float | None]:
        return {k: json_float(v) for k, v in vars(self).items()}


def json_float(value: float) -> float | None:
    return None if math.isnan(value) else value
