"""Why two adapters differ: non-finite rows, configuration diff, transform probing, noise floor.

For each failing pair, candidate explanations are tried in order of evidence (NaN/Inf rows first,
then vector norms, settings that differ, preprocessing transforms, then settings combined), each
only on the failing texts nothing has explained yet and only where its premise holds, so every
failing text is counted under exactly one cause and counts add up. A probe a side cannot express,
or one that crashes, is skipped and listed in `Diagnosis.probes` with the reason.

Modules: causes (the result types and the Explainer), outputs (probes on the vectors), rebuild
(probes that rebuild a side), pair (diagnose_pair), settings, probes, noise, tokens, projection
(different dimensions), opaque (checks through embed() alone, for stacks that show only
vectors), quantization (an int8 graph against fp32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parity.diagnose.causes import (
    INFERRED,
    MEASURED,
    Cause,
    Diagnosis,
    ProbeVectors,
    Side,
    cause_label,
)
from parity.diagnose.noise import find_outlier
from parity.diagnose.pair import diagnose_pair, first_differing_stage
from parity.diagnose.probes import CAUSES

__all__ = [
    "CAUSES",
    "INFERRED",
    "MEASURED",
    "Cause",
    "Diagnosis",
    "Side",
    "cause_label",
    "diagnose_pair",
    "diagnose_run",
    "first_differing_stage",
]


def _probe_vectors(result: Any, sides: dict[str, Side]) -> ProbeVectors:
    """The probe vectors every pair of `result` shares, through its embedding cache (if any)."""
    cache = getattr(result, "cache", None)
    if cache is None:
        return ProbeVectors()
    from parity.runner import adapter_key

    keys = frozenset(adapter_key(s.adapter) for s in sides.values() if s.adapter.cacheable)
    return ProbeVectors(cache, keys)


def diagnose_run(result: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Diagnose every failing pair of a RunResult in place; return run-level findings."""
    progress = progress or (lambda message: None)
    sides = {
        label: Side(
            label, result.specs[label], adapter, result.embeddings[label], result.configs[label]
        )
        for label, adapter in result.adapters.items()
    }
    probes = _probe_vectors(result, sides)  # one for every pair
    for pair in result.comparison.pairs:
        if pair or pair.a not in sides or pair.b not in sides:
            continue
        progress(f"diagnosing {pair.a} vs {pair.b} ({pair.failures} failing texts)")
        found = diagnose_pair(
            sides[pair.a],
            sides[pair.b],
            result.texts,
            pair,
            result.model,
            result.comparison.tolerance,
            progress,
            others=[s for label, s in sides.items() if label not in (pair.a, pair.b)],
            probes=probes,
        )
        pair.causes = [c.as_dict() for c in found.causes]
        pair.diagnosis = found.as_dict()
    outlier = find_outlier(result.comparison.pairs, list(result.embeddings))
    return {"outlier": outlier}
