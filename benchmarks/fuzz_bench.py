"""Texts checked per second: batch-first search vs a naive @given(text()) loop that embeds one
text per example, on the same model and the same two loaded adapters (sentence-transformers vs
custom): the bundled all-MiniLM-L6-v2 (the figure that counts) and the suite's tiny BPE model.

Both sides count the texts they really embed: the search through a wrapper around the first
adapter's embed (distinct texts only; a text seen in an earlier batch is not embedded again),
the naive loop one per example. Tokens per text are printed for both, so the search cannot look
fast by checking shorter texts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BATCHES = 30
NAIVE_EXAMPLES = 200


def _mean_tokens(adapter: Any, texts: Sequence[str]) -> float:
    return statistics.mean(len(adapter.tokenizer(text)["input_ids"]) for text in texts)


def bench_model(model: Path, name: str, batches: int = BATCHES) -> float:
    """Print both rates for one model and return the speed-up."""
    from parity.adapters import AdapterSpec
    from parity.compare import compare_pair
    from parity.metrics import Tolerance
    from parity.search.fuzz import fuzz_pair

    a = AdapterSpec.parse("sentence-transformers").build(model)
    b = AdapterSpec.parse("custom").build(model)
    a.load()
    b.load()
    tolerance = Tolerance()
    a.embed(["warm-up", "two texts"])
    b.embed(["warm-up", "two texts"])
    fuzz_pair(a, b, tolerance=tolerance, max_examples=1, seed=1)  # warm-up: padded batches

    embedded: list[str] = []
    original = a.embed

    def counting(texts):  # type: ignore[no-untyped-def]
        embedded.extend(texts)
        return original(texts)

    a.embed = counting  # type: ignore[method-assign]
    a.embed_seconds = b.embed_seconds = 0.0
    started = time.perf_counter()
    found = fuzz_pair(a, b, tolerance=tolerance, max_examples=batches)
    batch_seconds = time.perf_counter() - started
    batch_model = a.embed_seconds + b.embed_seconds
    a.embed = original  # type: ignore[method-assign]

    naive: list[str] = []

    @settings(
        max_examples=NAIVE_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=st.text())
    def naive_loop(text: str) -> None:
        naive.append(text)
        assert compare_pair("a", a.embed([text]), "b", b.embed([text]), [text], tolerance)

    a.embed_seconds = b.embed_seconds = 0.0
    started = time.perf_counter()
    naive_loop()
    naive_seconds = time.perf_counter() - started
    naive_model = a.embed_seconds + b.embed_seconds
    batch_rate = len(embedded) / batch_seconds
    naive_rate = len(naive) / naive_seconds
    verdict = "nothing diverged" if found else f"diverged: {found.minimal_failing}"
    print(f"{name}: sentence-transformers vs custom")
    print(
        f"  batch-first search: {len(embedded)} texts in {batch_seconds:.2f} s = "
        f"{batch_rate:.0f} texts/s ({found.examples} hypothesis examples, "
        f"{_mean_tokens(b, embedded):.1f} tokens/text, {verdict}); "
        f"{batch_model / batch_seconds:.0%} of it inside the adapters' embed"
    )
    print(
        f"  naive @given(text()) loop: {len(naive)} texts in {naive_seconds:.2f} s = "
        f"{naive_rate:.0f} texts/s ({_mean_tokens(b, naive):.1f} tokens/text); "
        f"{naive_model / naive_seconds:.0%} of it inside the adapters' embed"
    )
    print(f"  speed-up: {batch_rate / naive_rate:.1f}x  (target >= 10x)")
    a.close()
    b.close()
    return batch_rate / naive_rate


def bench_fuzz() -> float:
    """The bundled MiniLM figure (returned), then the tiny BPE model's."""
    from parity.modelinfo import bundled_model_path
    from parity.tinymodels import build_tiny_model

    speedup = bench_model(bundled_model_path(), "all-MiniLM-L6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        bench_model(build_tiny_model("bpe", Path(tmp) / "bpe", seed=0), "tiny BPE model")
    return speedup


if __name__ == "__main__":
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    bench_fuzz()
