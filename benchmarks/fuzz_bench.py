"""Texts checked per second: batch-first search vs a naive @given(text()) loop that embeds one
text per example, both on the bundled all-MiniLM-L6-v2 (sentence-transformers vs custom)."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 100


def bench_fuzz() -> float:
    from parity.adapters import AdapterSpec
    from parity.compare import Tolerance, compare_pair
    from parity.fuzz import fuzz_pair
    from parity.modelinfo import bundled_model_path

    model = bundled_model_path()
    a = AdapterSpec.parse("sentence-transformers").build(model)
    b = AdapterSpec.parse("custom").build(model)
    a.load()
    b.load()
    tolerance = Tolerance()

    fuzz_pair(a, b, tolerance=tolerance, max_examples=5)  # warm-up
    counted = {"texts": 0}
    original = a.embed

    def counting(texts):  # type: ignore[no-untyped-def]
        counted["texts"] += len(texts)
        return original(texts)

    a.embed = counting  # type: ignore[method-assign]
    started = time.perf_counter()
    fuzz_pair(a, b, tolerance=tolerance, max_examples=EXAMPLES)
    batch_seconds = time.perf_counter() - started
    a.embed = original  # type: ignore[method-assign]
    batch_texts = counted["texts"]

    naive = {"texts": 0}

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=st.text())
    def naive_loop(text: str) -> None:
        naive["texts"] += 1
        assert compare_pair("a", a.embed([text]), "b", b.embed([text]), [text], tolerance)

    started = time.perf_counter()
    naive_loop()
    naive_seconds = time.perf_counter() - started
    batch_rate = batch_texts / batch_seconds
    naive_rate = naive["texts"] / naive_seconds
    print(
        f"batch-first search: {batch_texts} texts in {batch_seconds:.2f} s = "
        f"{batch_rate:.0f} texts/s ({EXAMPLES} batches)"
    )
    print(
        f"naive @given(text()) loop: {naive['texts']} texts in {naive_seconds:.2f} s = "
        f"{naive_rate:.0f} texts/s"
    )
    print(f"speed-up: {batch_rate / naive_rate:.1f}x  (target >= 10x)")
    return batch_rate / naive_rate
