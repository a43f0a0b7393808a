"""The runner's batching: distinct texts once, length-sorted calls, order restored, and the
vectors those calls give equal one call's within the batch-noise floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parity.adapters import AdapterSpec
from parity.runner import embed_all
from parity.texts import builtin_corpus


@pytest.mark.parametrize("spec", ["custom", "sentence-transformers", "langchain"])
def test_sorted_chunks_give_one_calls_vectors_in_text_order(spec: str, bpe_model: Path) -> None:
    texts = builtin_corpus()
    with AdapterSpec.parse(spec).build(bpe_model) as adapter:
        whole = adapter.embed(texts)
        chunked = embed_all(adapter, texts, lambda message: None, chunk=16)
    # order restored: every row is its own text's vector (not a neighbour's), within batch noise
    assert np.abs(whole - chunked).max() < 1e-5
    # rows are not interchangeable: a one-row shift would be far off, so the match is real
    assert np.abs(whole[1:] - chunked[:-1]).max() > 1e-2


def test_each_distinct_text_is_embedded_once(bpe_model: Path) -> None:
    texts = ["b text", "a", "b text", "  a  ", "a", "a longer text here"]
    with AdapterSpec.parse("custom").build(bpe_model) as adapter:
        calls: list[list[str]] = []
        real = adapter.embed

        def counting(batch: list[str]) -> np.ndarray:
            calls.append(list(batch))
            return real(batch)

        adapter.embed = counting  # type: ignore[method-assign]
        vectors = embed_all(adapter, texts, lambda message: None, chunk=2)
        alone = real(texts)
    assert sorted(t for call in calls for t in call) == sorted(set(texts))
    assert [len(c) for c in calls] == [2, 2]
    assert [len(t) for t in calls[0] + calls[1]] == sorted(len(t) for t in set(texts))
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_progress_lines_every_chunk_of_texts(bpe_model: Path) -> None:
    lines: list[str] = []
    texts = [f"text number {i}" for i in range(1100)]
    with AdapterSpec.parse("custom").build(bpe_model) as adapter:
        embed_all(adapter, texts, lines.append)
    assert lines == ["custom: 512/1100 texts", "custom: 1024/1100 texts", "custom: 1100/1100 texts"]


def test_calls_follow_the_adapters_own_batch_size(bpe_model: Path) -> None:
    from parity.runner import BATCH, call_size

    assert call_size(AdapterSpec.parse("custom:batch_size=7").build(bpe_model)) == 7
    assert call_size(AdapterSpec.parse("bcembedding:batch_size=256").build(bpe_model)) == 256
    # BCEmbedding ships 256; the adapter's default is 32, which its padding runs faster
    assert call_size(AdapterSpec.parse("bcembedding").build(bpe_model)) == BATCH
    served = AdapterSpec.parse("http:url=http://127.0.0.1:9/e,batch_size=8,concurrency=3")
    assert call_size(served.build("")) == 24  # every request of one call in flight at once
    assert call_size(AdapterSpec.parse("langchain").build(bpe_model)) == BATCH
