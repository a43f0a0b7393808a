"""Assertion helpers behind the pytest plugin: find the worst failing text and explain it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from parity.compare import PairResult, TextDelta, compare_pair, metric_lines
from parity.metrics import Tolerance


def first_failure(
    adapters: dict[str, Any], texts: Sequence[str], tolerance: Tolerance
) -> tuple[PairResult, TextDelta] | None:
    """Embed the batch once per adapter; return the first failing pair and its worst text."""
    vectors = {label: adapter.embed(texts) for label, adapter in adapters.items()}
    for a, b in itertools.combinations(vectors, 2):
        pair = compare_pair(a, vectors[a], b, vectors[b], texts, tolerance)
        if not pair:
            return pair, pair.worst(1)[0]
    return None


def _top_cause(
    pair: PairResult, adapters: dict[str, Any], text: str, tolerance: Tolerance
) -> str | None:
    """Diagnose the worst text alone and return 'cause: fix', or None."""
    from parity.adapters import AdapterSpec
    from parity.diagnose import Side, cause_label, diagnose_pair

    a, b = adapters[pair.a], adapters[pair.b]
    sides = []
    for adapter in (a, b):
        spec = AdapterSpec(adapter.name, adapter.given, adapter.label)
        sides.append(Side(adapter.label, spec, adapter, adapter.embed([text]), adapter.describe()))
    single = compare_pair(pair.a, sides[0].vectors, pair.b, sides[1].vectors, [text], tolerance)
    if single:
        return None
    found = diagnose_pair(
        sides[0], sides[1], [text], single, a.model, tolerance, lambda message: None
    )
    top = found.causes[0]
    return (
        f"{cause_label(top.as_dict())}: {top.detail} Fix: {top.fix} ({top.evidence}: {top.basis})"
    )


def failure_message(
    pair: PairResult,
    worst: TextDelta,
    adapters: dict[str, Any],
    tolerance: Tolerance,
    origin: str | None,
) -> str:
    lines = [f"{pair.a} vs {pair.b}: {pair.failures} of {pair.n} texts differ beyond tolerance"]
    if origin:
        lines.append(f"  ({origin})")
    try:
        cause = _top_cause(pair, adapters, worst.text, tolerance)
    except Exception as exc:  # diagnosis must never hide the failure itself
        cause = f"(diagnosis failed: {type(exc).__name__}: {exc})"
    if cause:
        lines.append(f"top cause: {cause}")
    lines.append(f"worst text: {worst.text!r}")
    lines += metric_lines(worst, tolerance)
    for label in (pair.a, pair.b):
        tokens = adapters[label].tokenize([worst.text])
        if tokens is not None:
            lines.append(f"  tokens {label}: {tokens[0]}")
    return "\n".join(lines)
