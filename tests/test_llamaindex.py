"""The `llamaindex` adapter runs LlamaIndex's real HuggingFaceEmbedding and says what it does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diagnosed_run import diagnosed

from parity.adapters import AdapterSpec

# newlines, edge whitespace and tabs: LlamaIndex must pass them on untouched (a byte-level BPE
# model turns each into its own tokens, so any replacement or strip would show)
TEXTS = [
    "line one\nline two",
    " hello",
    "trailing  ",
    "\tindented",
    "the cat sat on the mat",
    "search index query",
]


def test_llamaindex_documents_match_sentence_transformers_on_bpe(bpe_model: Path) -> None:
    pair = diagnosed(bpe_model, ["sentence-transformers", "llamaindex"], TEXTS)
    causes = pair.causes
    assert pair.passed, causes
    assert float(np.max(pair.per_text["max_abs"])) < 1e-6


def test_llamaindex_query_mode_prefixes_query_instruction_like_a_prompt(bpe_model: Path) -> None:
    specs = [
        "sentence-transformers:prompt=query: ",
        "llamaindex:mode=query,query_instruction=query: ",
    ]
    pair = diagnosed(bpe_model, specs, TEXTS[:3])
    causes = pair.causes
    assert pair.passed, causes
    adapter = AdapterSpec.parse(specs[1]).build(bpe_model)
    with adapter:
        described = adapter.describe()
        tokens = adapter.tokenize(["hi"])
    assert described["instruction"] == "query: "
    assert described["preprocessing"] == ["prefix 'query: '"]
    assert described["mode"] == "query"
    assert tokens is not None and "".join(tokens[0]).startswith("<s>query:")


def test_llamaindex_text_instruction_fails_with_measured_instruction_cause(
    bpe_model: Path,
) -> None:
    pair = diagnosed(
        bpe_model, ["sentence-transformers", "llamaindex:text_instruction=passage: "], TEXTS
    )
    causes = pair.causes
    assert pair.failures == len(TEXTS)
    assert [c["cause"] for c in causes] == ["instruction"]
    cause = causes[0]
    assert cause["evidence"] == "measured"
    assert cause["explained"] == len(TEXTS)
    assert "prefixes 'passage: '" in cause["detail"]
    assert "text_instruction" in cause["fix"]


def test_llamaindex_normalizes_where_the_model_does_not(tiny_models: dict[str, Path]) -> None:
    # the WordPiece tiny model has no Normalize module: sentence-transformers returns raw
    # vectors, HuggingFaceEmbedding passes normalize_embeddings=True by default
    pair = diagnosed(tiny_models["wordpiece"], ["sentence-transformers", "llamaindex"], TEXTS)
    causes = pair.causes
    assert pair.failures == len(TEXTS)
    assert [(c["cause"], c["evidence"]) for c in causes] == [("normalization", "measured")]
    assert causes[0]["fix"].startswith("set normalize=false on llamaindex")


def test_llamaindex_describe_reports_what_it_does(bpe_model: Path) -> None:
    adapter = AdapterSpec.parse("llamaindex:max_length=16,batch_size=3").build(bpe_model)
    with adapter:
        described = adapter.describe()
        vectors = adapter.embed(["word " * 40, "short"])
    assert described["preprocessing"] == []  # no strip, no newline replacement
    assert described["instruction"] == ""
    assert described["max_length"] == 16
    assert described["normalize"] is True
    assert described["pooling"] == "mean"
    assert described["batch_size"] == 3
    assert described["versions"]["llama-index-core"]
    assert described["versions"]["llama-index-embeddings-huggingface"]
    assert vectors.shape == (2, 64)


def test_llamaindex_spec_rejects_a_negative_max_length() -> None:
    from parity.errors import SpecError

    with pytest.raises(SpecError, match=r"llamaindex: max_length='-1': expected a whole number"):
        AdapterSpec.parse("llamaindex:max_length=-1")


@pytest.mark.slow
def test_llamaindex_matches_sentence_transformers_on_minilm(minilm: Path) -> None:
    texts = ["The quick brown fox.", "line one\nline two", " edge whitespace ", "Café naïve"]
    pair = diagnosed(minilm, ["sentence-transformers", "llamaindex"], texts)
    causes = pair.causes
    assert pair.passed, causes
    assert float(np.max(pair.per_text["max_abs"])) < 1e-6
