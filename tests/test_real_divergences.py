"""Real divergences, found with the real frameworks on real (tiny and bundled) models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from parity.adapters import AdapterSpec
from parity.compare import compare_pair
from parity.metrics import Tolerance
from parity.texts import builtin_corpus

Embed = Callable[[str, Path, list[str]], np.ndarray]

NEWLINE_TEXTS = ["line one\nline two", "a\nb", "ship to:\n12 river road\nspringfield", "end\n"]
PLAIN_TEXTS = ["line one line two", "a b", "the cat sat on the mat", "hello world"]
EDGE_TEXTS = [" hello", "hello ", "\tindented", "  both sides  ", "trailing newline\n"]


def _pair(embed: Embed, model: Path, a: str, b: str, texts: list[str]):  # type: ignore[no-untyped-def]
    return compare_pair(a, embed(a, model, texts), b, embed(b, model, texts), texts)


def test_langchain_newline_replacement_is_detected(embedder: Embed, bpe_model: Path) -> None:
    failing = _pair(embedder, bpe_model, "sentence-transformers", "langchain", NEWLINE_TEXTS)
    assert failing.failures == len(NEWLINE_TEXTS)
    assert failing.stats()["euclidean"].max > 0.1
    passing = _pair(embedder, bpe_model, "sentence-transformers", "langchain", PLAIN_TEXTS)
    assert passing and passing.stats()["max_abs"].max == 0.0


def test_strip_is_detected_on_edge_whitespace(embedder: Embed, bpe_model: Path) -> None:
    pair = _pair(embedder, bpe_model, "sentence-transformers", "custom:strip=true", EDGE_TEXTS)
    assert pair.failures == len(EDGE_TEXTS)
    assert _pair(embedder, bpe_model, "sentence-transformers", "custom:strip=true", PLAIN_TEXTS)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_custom_auto_reproduces_sentence_transformers(
    embedder: Embed, tiny_models: dict[str, Path], kind: str
) -> None:
    texts = NEWLINE_TEXTS + PLAIN_TEXTS + EDGE_TEXTS + ["word " * 200]
    pair = _pair(embedder, tiny_models[kind], "sentence-transformers", "custom", texts)
    assert pair.stats()["max_abs"].max < 1e-5


def test_bcembedding_defaults_are_described(embedder: Embed, bpe_model: Path) -> None:
    with AdapterSpec.parse("bcembedding").build(bpe_model) as adapter:
        described = adapter.describe()
    assert (described["pooling"], described["max_length"], described["normalize"]) == (
        "cls",
        512,
        True,
    )
    assert described["preprocessing"] == []
    assert described["versions"]["BCEmbedding"] == "0.1.5"


def test_langchain_describes_its_newline_step(bpe_model: Path) -> None:
    with AdapterSpec.parse("langchain").build(bpe_model) as adapter:
        described = adapter.describe()
        query = adapter.embed(["a\nb"])
    assert described["preprocessing"] == ["replace \\n with space"]
    with AdapterSpec.parse("langchain:mode=query").build(bpe_model) as adapter:
        assert np.allclose(adapter.embed(["a\nb"]), query, atol=1e-6)


@pytest.mark.slow
def test_bcembedding_mean_fails_only_past_256_tokens(embedder: Embed, minilm: Path) -> None:
    from transformers import AutoTokenizer

    texts = builtin_corpus()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    long_ones = {i for i, t in enumerate(texts) if len(tokenizer(t)["input_ids"]) > 256}
    pair = _pair(embedder, minilm, "sentence-transformers", "bcembedding:pooling=mean", texts)
    assert set(pair.failing_indices()) == long_ones
    assert pair.stats()["max_abs"].max > 0.05


@pytest.mark.slow
def test_custom_auto_matches_sentence_transformers_on_minilm(embedder: Embed, minilm: Path) -> None:
    texts = builtin_corpus()
    pair = _pair(embedder, minilm, "sentence-transformers", "custom", texts)
    assert pair.stats()["max_abs"].max < 1e-5


@pytest.mark.slow
def test_bfloat16_fails_euclidean_but_passes_max_abs(embedder: Embed, minilm: Path) -> None:
    texts = builtin_corpus()
    pair = _pair(embedder, minilm, "sentence-transformers", "custom:dtype=bfloat16", texts)
    stats = pair.stats()
    assert stats["max_abs"].max < 5e-3
    assert stats["euclidean"].max > 5e-3
    assert not pair
    assert all(r.startswith("euclidean") for r in pair.delta(pair.failing_indices()[0]).reasons)
    assert compare_pair(
        "a",
        embedder("sentence-transformers", minilm, texts),
        "b",
        embedder("custom:dtype=bfloat16", minilm, texts),
        texts,
        Tolerance.parse("euclidean=0.05"),
    )


@pytest.mark.slow
def test_bcembedding_mean_ranks_long_documents_differently(embedder: Embed, minilm: Path) -> None:
    """The report's retrieval figures: reading past token 256 moves nDCG@10 on long documents."""
    from parity.retrieval import load_retrieval_set, pair_impact

    rset = load_retrieval_set()
    texts = rset.all_texts()
    impact = pair_impact(
        rset,
        embedder("sentence-transformers", minilm, texts),
        embedder("bcembedding:pooling=mean", minilm, texts),
    )
    long_docs = impact["ndcg@10_long_docs"]
    assert long_docs["queries"] == 32
    assert long_docs["diff"] > 0.01  # 0.210 -> 0.242 here
    assert abs(impact["ndcg@10"]["diff"]) < long_docs["diff"]
    assert impact["score_delta"]["euclidean"]["max"] > 0.1
