"""The noise floor (an adapter against itself, other batching) and the outlier among adapters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parity.adapters import Adapter
from parity.compare import PairResult
from parity.metrics import METRICS, deltas

NOISE_SAMPLE = 16


def noise_floor(adapter: Adapter, texts: Sequence[str], vectors: np.ndarray) -> dict[str, float]:
    """Max deltas between the run's batched vectors and the same texts embedded one at a time,
    in reverse order: what batch composition and padding alone change."""
    take = list(range(min(NOISE_SAMPLE, len(texts))))
    again = np.concatenate([adapter.embed([texts[i]]) for i in reversed(take)])[::-1]
    found = deltas(vectors[take], again)
    # a NaN/Inf row is a finding of its own (cause non-finite), not batch noise
    finite = ~np.isnan(found["euclidean"])
    return {m: float(found[m][finite].max()) if finite.any() else 0.0 for m in METRICS}


def find_outlier(pairs: Sequence[PairResult], labels: Sequence[str]) -> str | None:
    """With 3+ adapters: the one that fails against every other while all others agree."""
    if len(labels) < 3:
        return None
    failing = {(p.a, p.b) for p in pairs if not p}
    for label in labels:
        others = [x for x in labels if x != label]
        against = all((label, o) in failing or (o, label) in failing for o in others)
        among = all(
            (x, y) not in failing and (y, x) not in failing
            for i, x in enumerate(others)
            for y in others[i + 1 :]
        )
        if against and among:
            return label
    return None
