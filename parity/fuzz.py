"""Batch-first property search: one hypothesis example is a batch, embedded in one call per side."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.adapters import Adapter
from parity.compare import METRICS, Tolerance, compare_pair


@dataclass
class FuzzResult:
    """What a search found for one pair; truthy when nothing diverged within the budget."""

    a: str
    b: str
    examples: int
    minimal_failing: dict[str, Any] | None = None
    found: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.minimal_failing is None


def search_strategy(max_size: int = 16) -> Any:
    """Batches of texts: raw short strings first (they shrink to one or two characters), then
    the targeted generators of parity.strategies (whitespace, newlines, unicode, ...)."""
    from hypothesis import strategies as st

    from parity.strategies import batches, texts

    return batches(min_size=1, max_size=max_size, elements=st.one_of(st.text(max_size=12), texts()))


def fuzz_pair(
    a: Adapter,
    b: Adapter,
    *,
    tolerance: Tolerance,
    max_examples: int,
    seed: int | None = None,
    strategy: Any = None,
    progress: Callable[[str], None] = lambda message: None,
) -> FuzzResult:
    """Search batches of texts for one that diverges, then shrink it to one minimal text."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = strategy if strategy is not None else search_strategy()
    state: dict[str, Any] = {"examples": 0, "found": [], "seen": []}

    def diverges(batch: Sequence[str]) -> bool:
        state["examples"] += 1
        if len(state["seen"]) < 256:
            state["seen"].extend(batch)
        if state["examples"] % 25 == 0:
            progress(f"{a.label} vs {b.label}: {state['examples']} batches")
        pair = compare_pair(a.label, a.embed(batch), b.label, b.embed(batch), batch, tolerance)
        if not pair:
            state["found"].append(pair.worst(1)[0].text)
        return not pair

    config = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )
    rng = random.Random(seed) if seed is not None else None
    try:
        minimal = find(strategy, diverges, settings=config, random=rng)
    except NoSuchExample:
        return FuzzResult(a.label, b.label, state["examples"], seen=state["seen"])
    pair = compare_pair(a.label, a.embed(minimal), b.label, b.embed(minimal), minimal, tolerance)
    worst = pair.worst(1)[0]
    record = {"text": worst.text, **{m: getattr(worst, m) for m in METRICS}}
    return FuzzResult(
        a.label, b.label, state["examples"], record, state["found"], seen=state["seen"]
    )


def fuzz_run(
    specs: Sequence[Any],
    *,
    model: str | None,
    tolerance: Tolerance,
    max_examples: int,
    seed: int | None,
    regressions: Path | None,
    progress: Callable[[str], None],
) -> tuple[Any, dict[str, dict[str, Any] | None]]:
    """Search every pair, then compare and diagnose on the texts the search saw.

    Returns a RunResult (adapters still loaded) and the minimal failing example per pair."""
    import itertools

    from parity.compare import compare_all
    from parity.modelinfo import resolve_model
    from parity.regressions import append_regression
    from parity.runner import RunResult, require_two

    require_two(specs)
    model_path = resolve_model(model)
    adapters = {s.label: s.build(model_path) for s in specs}
    for label, adapter in adapters.items():
        progress(f"{label}: loading {model_path.name}")
        adapter.load()
    minimal: dict[str, dict[str, Any] | None] = {}
    texts: list[str] = []
    for x, y in itertools.combinations(adapters.values(), 2):
        progress(f"searching {x.label} vs {y.label} ({max_examples} examples at most)")
        found = fuzz_pair(
            x, y, tolerance=tolerance, max_examples=max_examples, seed=seed, progress=progress
        )
        minimal[f"{x.label}\t{y.label}"] = found.minimal_failing
        if found.minimal_failing is not None:
            texts.append(found.minimal_failing["text"])
            if regressions is not None:
                metrics = {m: found.minimal_failing[m] for m in METRICS}
                append_regression(
                    found.minimal_failing["text"], [x.label, y.label], metrics, regressions
                )
        texts.extend(found.found[:50] + found.seen[:100])
    texts = list(dict.fromkeys(texts))
    embeddings = {label: a.embed(texts) for label, a in adapters.items()}
    configs = {label: a.describe() for label, a in adapters.items()}
    comparison = compare_all(embeddings, texts, tolerance, configs)
    result = RunResult(
        str(model_path),
        texts,
        embeddings,
        configs,
        {s.label: s for s in specs},
        comparison,
        adapters=adapters,
    )
    return result, minimal
