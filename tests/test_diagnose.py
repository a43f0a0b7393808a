"""Diagnosis names the real cause, counts what it explains, and says how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parity.adapters import parse_specs
from parity.diagnose import diagnose_run
from parity.diagnose.tokens import token_diff
from parity.metrics import Tolerance
from parity.runner import run
from parity.texts import builtin_corpus

NEWLINE = ["line one\nline two", "ship to:\n12 river road", "a\nb c", "end\n\nnext"]
EDGE = [" hello", "hello ", "\tindented", "  both sides  "]
PLAIN = ["the cat sat on the mat", "hello world", "search index query", "tea and coffee"]
LONG = ["word " * 150 + "tail", "the river " * 90]


def diagnose(
    model: Path, specs: list[str], texts: list[str], tol: str | None = None
) -> tuple[list[dict[str, Any]], Any]:
    result = run(
        parse_specs(specs), texts, model=model, tolerance=Tolerance.parse(tol), keep_adapters=True
    )
    try:
        extra = diagnose_run(result)
    finally:
        for adapter in result.adapters.values():
            adapter.close()
    pair = result.comparison.pairs[0]
    assert sum(c["explained"] for c in pair.causes) == pair.failures
    return pair.causes, extra


def test_token_diff_aligns_whitespace_tokens() -> None:
    assert token_diff(["<s>", "Ġ", "hello"], ["<s>", "hello"]) == ["'Ġ' only in A (position 1)"]
    assert token_diff(["a", "Ċ", "b"], ["a", "Ġ", "b"]) == ["'Ċ' vs 'Ġ' (position 1)"]


def test_newline_cause_on_byte_level_bpe(bpe_model: Path) -> None:
    causes, _ = diagnose(bpe_model, ["langchain", "sentence-transformers"], NEWLINE + PLAIN)
    assert [(c["cause"], c["explained"]) for c in causes] == [("newline", 4)]
    assert causes[0]["stage"] == "input_ids"
    assert causes[0]["detail"].startswith(
        'langchain replaces "\\n" with " " before tokenizing, sentence-transformers does not'
    )
    assert causes[0]["fix"].startswith(
        'replace "\\n" with " " before calling sentence-transformers'
    )
    assert any("'Ċ'" in note for note in causes[0]["tokens"])


def test_strip_cause_on_edge_whitespace(bpe_model: Path) -> None:
    causes, _ = diagnose(bpe_model, ["custom:strip=true", "sentence-transformers"], EDGE + PLAIN)
    assert [(c["cause"], c["explained"]) for c in causes] == [("strip", 4)]
    assert causes[0]["fix"] == (
        "set strip=false on custom:strip=true, or strip texts before sentence-transformers"
    )
    assert any("'Ġhello'" in note for note in causes[0]["tokens"])


def test_two_causes_add_up(bpe_model: Path) -> None:
    causes, _ = diagnose(bpe_model, ["langchain", "custom:max_length=512"], NEWLINE + LONG + PLAIN)
    assert {(c["cause"], c["explained"]) for c in causes} == {("newline", 4), ("truncation", 2)}
    truncation = next(c for c in causes if c["cause"] == "truncation")
    assert truncation["fix"].startswith("set max_length=128 on custom:max_length=512")
    assert (
        "custom:max_length=512 truncates at 512 tokens, langchain at 128." == truncation["detail"]
    )


def test_pooling_cause(bpe_model: Path) -> None:
    causes, _ = diagnose(bpe_model, ["bcembedding", "sentence-transformers"], PLAIN + EDGE)
    assert [(c["cause"], c["explained"]) for c in causes] == [("pooling", 8)]
    assert causes[0]["fix"].startswith("set pooling=mean on bcembedding")
    assert causes[0]["detail"] == "bcembedding pools with cls, sentence-transformers with mean."


def test_normalization_cause_cosine_passes_euclidean_fails(tiny_models: dict[str, Path]) -> None:
    model = tiny_models["wordpiece"]  # no Normalize module
    result = run(
        parse_specs(["sentence-transformers", "bcembedding:pooling=mean"]),
        PLAIN,
        model=model,
        keep_adapters=True,
    )
    pair = result.comparison.pairs[0]
    assert pair.stats()["cosine"].max < 1e-6 and pair.stats()["euclidean"].max > 0.1
    diagnose_run(result)
    for adapter in result.adapters.values():
        adapter.close()
    assert [(c["cause"], c["explained"]) for c in pair.causes] == [("normalization", 4)]
    assert pair.causes[0]["detail"].startswith("bcembedding:pooling=mean returns unit vectors")


def test_instruction_cause(bpe_model: Path) -> None:
    causes, _ = diagnose(bpe_model, ["custom:instruction=query: ", "sentence-transformers"], PLAIN)
    assert [(c["cause"], c["explained"]) for c in causes] == [("instruction", 4)]
    assert "prefixes 'query: '" in causes[0]["detail"]


def test_dtype_cause(bpe_model: Path) -> None:
    causes, _ = diagnose(
        bpe_model, ["custom:dtype=bfloat16", "sentence-transformers"], PLAIN + EDGE, tol="1e-4"
    )
    assert causes[0]["cause"] == "dtype"
    assert causes[0]["fix"].startswith("set dtype=float32 on custom:dtype=bfloat16")


def test_batch_noise_when_tolerance_is_below_the_floor(bpe_model: Path) -> None:
    texts = PLAIN + EDGE + NEWLINE + ["a much longer text " * 6]
    causes, _ = diagnose(
        bpe_model, ["custom:batch_size=1", "sentence-transformers"], texts, tol="0"
    )
    assert causes, "expected float32 batch noise above a zero tolerance"
    assert {c["cause"] for c in causes} <= {"batch-noise", "unknown"}
    assert causes[0]["cause"] == "batch-noise"


def test_outlier_among_three(bpe_model: Path) -> None:
    result = run(
        parse_specs(["sentence-transformers", "custom", "custom:strip=true"]),
        EDGE + PLAIN,
        model=bpe_model,
        keep_adapters=True,
    )
    extra = diagnose_run(result)
    for adapter in result.adapters.values():
        adapter.close()
    assert extra["outlier"] == "custom:strip=true"


@pytest.mark.slow
def test_bcembedding_truncation_on_minilm(minilm: Path) -> None:
    causes, _ = diagnose(
        minilm, ["sentence-transformers", "bcembedding:pooling=mean"], builtin_corpus()
    )
    assert causes[0]["cause"] == "truncation"
    assert causes[0]["explained"] == 20 and len(causes) == 1
    assert causes[0]["fix"].startswith("set max_length=256 on bcembedding:pooling=mean")


@pytest.mark.slow
def test_bfloat16_dtype_on_minilm(minilm: Path) -> None:
    causes, _ = diagnose(
        minilm, ["sentence-transformers", "custom:dtype=bfloat16"], builtin_corpus()[:40]
    )
    assert [c["cause"] for c in causes] == ["dtype"]


def test_first_differing_stage_is_found_stage_by_stage(bpe_model: Path) -> None:
    cases = {
        "custom:strip=true": "input_ids",
        "custom:dtype=bfloat16": "token_embeddings",
        "custom:pooling=cls": "pooled",
    }
    for spec, stage in cases.items():
        result = run(
            parse_specs(["custom", spec]),
            EDGE + PLAIN,
            model=bpe_model,
            tolerance=Tolerance.parse("1e-4"),
            keep_adapters=True,
        )
        diagnose_run(result)
        for adapter in result.adapters.values():
            adapter.close()
        assert result.comparison.pairs[0].diagnosis["first_stage"] == stage, spec
