"""Pure numpy comparison of embedding matrices: per-text deltas, tolerances, per-pair results."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypedDict

import numpy as np

from parity.errors import ComparisonError
from parity.files import sha256_bytes
from parity.metrics import (
    DIMENSION,
    METRICS,
    NON_FINITE,
    MetricStats,
    Tolerance,
    deltas,
    json_float,
)

WORST_COUNT = 10
PREVIEW_CHARS = 200
# describe() keys that name an adapter rather than say what it does to a text
IDENTITY_KEYS = frozenset({"adapter", "label", "model", "versions", "batch_size"})


class SelfComparisonWarning(UserWarning):
    """Two differently configured adapters produced bit-identical vectors."""


def text_preview(text: str, limit: int = PREVIEW_CHARS) -> dict[str, Any]:
    """What summary.json keeps of a text: the first `limit` characters (+ "…" when cut), its
    sha256 (of the UTF-8 bytes) and its length in characters, never the whole text."""
    truncated = len(text) > limit
    return {
        "text": text[:limit] + "…" if truncated else text,
        "text_sha256": sha256_bytes(text.encode("utf-8", "surrogatepass")),
        "text_length": len(text),
        "truncated": truncated,
    }


@dataclass
class TextDelta:
    """The deltas of one text for one pair, and why it failed (both lists empty when it passed):
    `failed_metrics` names each metric over its tolerance, or is ["non-finite"] for NaN/Inf."""

    index: int
    text: str
    max_abs: float
    cosine: float
    euclidean: float
    rel_euclidean: float = 0.0
    reasons: list[str] = field(default_factory=list)
    failed_metrics: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form; `text` is a preview (see text_preview), not the whole text."""
        return {
            "index": self.index,
            **text_preview(self.text),
            **{m: json_float(getattr(self, m)) for m in METRICS},
            "reasons": self.reasons,
            "failed_metrics": self.failed_metrics,
        }


class PairRole(str, Enum):
    """A pair's role in `parity gate`: an adapter against its own baseline vectors (these pairs
    gate), or two adapters run today (reported; they gate only when newly failing)."""

    BASELINE = "baseline"
    CROSS = "cross"


class MinimalFailing(TypedDict):
    """The simplest diverging text `parity fuzz` found for a pair, measured on its own (or
    inside its batch, with `batch_dependent` true, when it only diverges among other texts)."""

    text: str
    max_abs: float
    cosine: float
    euclidean: float
    batch_dependent: bool


@dataclass
class BaselineLink:
    """What a gate pair is compared with: the recorded adapter and its recorded settings (for
    a BASELINE pair), or the pair's verdict when the baseline was made (for a CROSS pair)."""

    baseline_adapter: str | None = None
    baseline_config: dict[str, Any] | None = None
    at_baseline: dict[str, int] | None = None


@dataclass
class PairResult:
    """Comparison of two adapters over the same texts. Truthy when every text is within tolerance.

    `nonfinite` maps a side's label (a or b) to the indices of the texts whose vector on that
    side holds NaN or Inf (only sides that have any; {} when every vector is finite). Those texts
    always fail; diagnosis turns them into the cause "non-finite".
    """

    a: str
    b: str
    tolerance: Tolerance
    per_text: dict[str, np.ndarray]
    texts: Sequence[str]
    failing: np.ndarray
    causes: list[dict[str, Any]] = field(default_factory=list)
    diagnosis: dict[str, Any] = field(default_factory=dict)
    nonfinite: dict[str, list[int]] = field(default_factory=dict)
    retrieval: dict[str, Any] | None = None  # retrieval impact (parity.retrieval.pair_impact)
    searched: bool = False  # set by `parity fuzz`, which reports minimal_failing per pair
    minimal_failing: MinimalFailing | None = None
    role: PairRole | None = None  # set by `parity gate`
    link: BaselineLink | None = None  # set by `parity gate`
    # {"a": dim, "b": dim} when the two sides return vectors of different lengths (else {}): every
    # text fails, every metric is inf (the vectors live in different spaces), diagnosis says why
    dimensions: dict[str, int] = field(default_factory=dict)

    def dimension_note(self) -> str:
        """ "embedding dimensions differ: 384 (a) vs 128 (b)", or "" when they agree."""
        if not self.dimensions:
            return ""
        a, b = self.dimensions["a"], self.dimensions["b"]
        return f"embedding dimensions differ: {a} ({self.a}) vs {b} ({self.b})"

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def failures(self) -> int:
        return int(self.failing.sum())

    @property
    def passed(self) -> bool:
        """No text beyond tolerance, and no diverging text found by a search (fuzz's find
        decides even when it only diverges inside a batch)."""
        return self.failures == 0 and self.minimal_failing is None

    def __bool__(self) -> bool:
        return self.passed

    def stats(self) -> dict[str, MetricStats]:
        return {m: MetricStats.of(self.per_text[m]) for m in METRICS}

    def delta(self, index: int) -> TextDelta:
        values = {m: float(self.per_text[m][index]) for m in METRICS}
        reasons, failed = [], []
        if self.dimensions:
            reasons.append(self.dimension_note())
            failed.append(DIMENSION)
        elif any(math.isnan(v) for v in values.values()):
            sides = [label for label, rows in self.nonfinite.items() if index in rows]
            where = f" from {' and '.join(sides)}" if sides else ""
            reasons.append(f"non-finite values (NaN or Inf) in an embedding{where}")
            failed.append(NON_FINITE)
        else:
            for m in self.tolerance.active():
                tol = getattr(self.tolerance, m)
                if values[m] > tol:
                    reasons.append(f"{m} {values[m]:.3g} > {tol:.3g}")
                    failed.append(m)
        return TextDelta(index, self.texts[index], reasons=reasons, failed_metrics=failed, **values)

    def decided_by(self) -> dict[str, int]:
        """Per metric in force (and "non-finite"): how many failing texts it failed. A text over
        several tolerances counts under each, so the counts may add up to more than failures."""
        if self.dimensions:  # every text, for one reason: no metric decided it
            return {**dict.fromkeys(self.tolerance.active(), 0), NON_FINITE: 0, DIMENSION: self.n}
        nan = np.isnan(self.per_text[METRICS[0]])
        counts = {
            m: int((~nan & (self.per_text[m] > getattr(self.tolerance, m))).sum())
            for m in self.tolerance.active()
        }
        return {**counts, NON_FINITE: int(nan.sum())}

    def worst(self, count: int = WORST_COUNT) -> list[TextDelta]:
        """The texts with the largest Euclidean delta (non-finite ones first)."""
        key = np.nan_to_num(self.per_text["euclidean"], nan=np.inf)
        order = np.argsort(-key, kind="stable")[:count]
        return [self.delta(int(i)) for i in order]

    def failing_indices(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.failing)]

    def min_tolerance(
        self, stats: Mapping[str, MetricStats] | None = None
    ) -> dict[str, float | None]:
        """The smallest tolerance per metric under which this pair would pass (Polygraphy-style)."""
        stats = stats or self.stats()
        return {m: json_float(stats[m].max) for m in METRICS}

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL ({self.failures}/{self.n} texts)"
        if not self.n:
            return f"{self.a} vs {self.b}: {verdict} (no texts)"
        if self.dimensions:
            return f"{self.a} vs {self.b}: {verdict}; {self.dimension_note()}"
        worst = self.worst(1)[0]
        return (
            f"{self.a} vs {self.b}: {verdict}; worst text #{worst.index} {worst.text[:60]!r}: "
            + ", ".join(f"{m}={getattr(worst, m):.3g}" for m in self.tolerance.active())
        )

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats()
        return {
            "a": self.a,
            "b": self.b,
            "n": self.n,
            "passed": self.passed,
            "failures": self.failures,
            "stats": {m: s.as_dict() for m, s in stats.items()},
            "min_tolerance": self.min_tolerance(stats),
            "decided_by": self.decided_by(),
            "nonfinite": self.nonfinite,
            "worst": [d.as_dict() for d in self.worst()],
            # a cause lists its first 50 texts here; the per-text results have every one
            "causes": [{**c, "indices": c.get("indices", [])[:50]} for c in self.causes],
            **({"diagnosis": self.diagnosis} if self.diagnosis else {}),
            **self._optional_fields(),
        }

    def _optional_fields(self) -> dict[str, Any]:
        """summary.json keys that only some commands fill (retrieval, fuzz, gate)."""
        out: dict[str, Any] = {}
        if self.retrieval is not None:
            out["retrieval"] = self.retrieval
        if self.searched:
            out["minimal_failing"] = self.minimal_failing
        if self.role is not None:
            out["kind"] = self.role.value
        if self.role is PairRole.BASELINE:
            out["adapter"] = self.b
        if self.link is not None:
            link = {k: v for k, v in vars(self.link).items() if v is not None}
            out.update(link)
        if self.dimensions:
            out["dimensions"] = self.dimensions
        return out


def metric_lines(delta: TextDelta, tolerance: Tolerance) -> list[str]:
    """One line per metric in force: obtained, tolerance, FAIL or ok (pytest-regressions style)."""
    lines = []
    for m in tolerance.active():
        value, limit = getattr(delta, m), getattr(tolerance, m)
        verdict = "FAIL" if not value <= limit else "ok"
        lines.append(f"  {m:9s} obtained {value:.4g}  tolerance {limit:.4g}  {verdict}")
    return lines


def compare_pair(
    a_label: str,
    a: np.ndarray,
    b_label: str,
    b: np.ndarray,
    texts: Sequence[str],
    tolerance: Tolerance | None = None,
) -> PairResult:
    """Compare two (n, dim) matrices row by row against `tolerance`.

    Two sides with different dimensions are a finding, not an input error: every text fails
    (`dimensions` says why; a projection applied on one side only, or another model)."""
    tolerance = tolerance or Tolerance()
    if a.ndim == b.ndim == 2 and len(a) == len(b) and a.shape[1] != b.shape[1]:
        if len(texts) != a.shape[0]:
            raise ComparisonError(f"{len(texts)} texts but {a.shape[0]} vectors")
        per_text = {m: np.full(len(a), np.inf) for m in METRICS}
        dims = {"a": int(a.shape[1]), "b": int(b.shape[1])}
        failing = np.ones(len(a), dtype=bool)
        return PairResult(a_label, b_label, tolerance, per_text, texts, failing, dimensions=dims)
    try:
        per_text = deltas(a, b)
    except ComparisonError as exc:
        raise ComparisonError(f"{a_label} vs {b_label}: {exc}") from None
    if len(texts) != a.shape[0]:
        raise ComparisonError(f"{len(texts)} texts but {a.shape[0]} vectors")
    nonfinite = {}
    for label, vectors in ((a_label, a), (b_label, b)):
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if rows.size:
            nonfinite[label] = [int(i) for i in rows]
    failing = ~tolerance.within(per_text)
    return PairResult(a_label, b_label, tolerance, per_text, texts, failing, nonfinite=nonfinite)


@dataclass
class Comparison:
    """All pairs of a run. Truthy when every pair passed."""

    pairs: list[PairResult]
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return all(self.pairs)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.pairs)


def setting_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """describe() keys both sides report with different values, ignoring the ones that only
    name an adapter (label, adapter, model, versions, batch_size)."""
    return [k for k in a if k in b and k not in IDENTITY_KEYS and a[k] != b[k]]


# exercised(a_label, b_label, differing keys) -> how the texts exercise the difference, or None
Exercised = Callable[[str, str, list[str]], "str | None"]


def compare_all(
    embeddings: Mapping[str, np.ndarray],
    texts: Sequence[str],
    tolerance: Tolerance | None = None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    exercised: Exercised | None = None,
) -> Comparison:
    """Compare every pair of adapters (in the given order) and warn on self-comparison."""
    tolerance = tolerance or Tolerance()
    pairs = []
    for a_label, b_label in itertools.combinations(embeddings, 2):
        a, b = embeddings[a_label], embeddings[b_label]
        pairs.append(compare_pair(a_label, a, b_label, b, texts, tolerance))
        if len(texts) and a.shape == b.shape and np.array_equal(a, b):
            _warn_if_wired(a_label, b_label, len(texts), configs, exercised)
    return Comparison(pairs, tolerance)


def _warn_if_wired(
    a_label: str,
    b_label: str,
    n: int,
    configs: Mapping[str, Mapping[str, Any]] | None,
    exercised: Exercised | None,
) -> None:
    """Bit-identical vectors: warn when the settings differ (setting_differences) and
    `exercised` (when given) says how the texts exercise that difference."""
    if configs is None:
        differing = ["configs unknown"]
    else:
        differing = setting_differences(configs.get(a_label, {}), configs.get(b_label, {}))
    how = exercised(a_label, b_label, differing) if exercised and differing else ""
    if not differing or how is None:
        return
    warnings.warn(
        f"{a_label} and {b_label} are configured differently ({', '.join(differing)}) but "
        f"returned bit-identical vectors for all {n} texts{f', although {how}' if how else ''}: "
        "one is probably wired to the other",
        SelfComparisonWarning,
        stacklevel=3,
    )
