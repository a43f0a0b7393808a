from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from parity.adapters import REGISTRY, parse_specs
from parity.adapters.base import Adapter, Option
from parity.compare import SelfComparisonWarning, compare_all, compare_pair
from parity.errors import ComparisonError, ParityInputError
from parity.metrics import Tolerance, deltas
from parity.runner import run


def test_deltas_match_hand_computed_values() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[0.0, 1.0], [3.0, 4.5]], dtype=np.float32)
    d = deltas(a, b)
    assert d["max_abs"].tolist() == [1.0, 0.5]
    assert d["euclidean"][0] == pytest.approx(math.sqrt(2))
    assert d["euclidean"][1] == pytest.approx(0.5)
    assert d["cosine"][0] == pytest.approx(1.0)
    expected = 1 - (9 + 18) / (5 * math.sqrt(9 + 20.25))
    assert d["cosine"][1] == pytest.approx(expected, rel=1e-12)


def test_zero_vectors_have_defined_cosine() -> None:
    d = deltas(np.zeros((2, 3)), np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    assert d["cosine"].tolist() == [0.0, 1.0]


def test_nan_row_fails_with_reason_and_other_rows_are_unaffected() -> None:
    a = np.array([[1.0, 0.0], [np.nan, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0]])
    pair = compare_pair("a", a, "b", b, ["ok", "bad"])
    assert pair.failing.tolist() == [False, True]
    assert not pair
    worst = pair.worst(1)[0]
    assert worst.index == 1
    assert worst.reasons == ["non-finite values (NaN or Inf) in an embedding from a"]
    assert worst.failed_metrics == ["non-finite"]
    assert pair.nonfinite == {"a": [1]}
    assert pair.as_dict()["stats"]["max_abs"]["max"] is None


def test_dimension_mismatch_fails_every_text_with_a_dimension_note() -> None:
    # a finding (a projection on one side only, another model), not an input error
    pair = compare_pair(
        "x", np.ones((2, 3)), "y", np.ones((2, 4)), ["a", "b"], Tolerance.parse("off")
    )
    assert not pair and pair.failures == 2
    assert pair.dimensions == {"a": 3, "b": 4}
    assert str(pair) == "x vs y: FAIL (2/2 texts); embedding dimensions differ: 3 (x) vs 4 (y)"
    worst = pair.worst(1)[0]
    assert worst.reasons == ["embedding dimensions differ: 3 (x) vs 4 (y)"]
    assert worst.failed_metrics == ["dimension"]
    assert np.isinf(pair.per_text["euclidean"]).all()
    assert pair.decided_by() == {"dimension": 2, "non-finite": 0}
    assert pair.as_dict()["dimensions"] == {"a": 3, "b": 4}
    # the raw metric still refuses, and a count mismatch stays an error
    with pytest.raises(ComparisonError, match=r"embedding dimensions differ: 3 vs 4"):
        deltas(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ComparisonError, match=r"x vs y: different numbers of vectors: 2 vs 3"):
        compare_pair("x", np.ones((2, 3)), "y", np.ones((3, 4)), ["a", "b"])


def test_tolerance_parsing() -> None:
    assert Tolerance.parse(None).as_dict() == {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 5e-3}
    assert Tolerance.parse("1e-4").as_dict() == {"max_abs": 1e-4, "cosine": 1e-4, "euclidean": 1e-4}
    tol = Tolerance.parse(["euclidean=1e-2,max_abs=5e-3", "cosine=0"])
    assert (tol.euclidean, tol.max_abs, tol.cosine) == (1e-2, 5e-3, 0.0)
    with pytest.raises(ParityInputError, match="unknown metric 'l2'; choose from max_abs"):
        Tolerance.parse("l2=1")
    with pytest.raises(ParityInputError, match="'abc' is not a number"):
        Tolerance.parse("cosine=abc")
    with pytest.raises(ParityInputError, match="finite number >= 0"):
        Tolerance.parse("-1")


def test_euclidean_can_fail_while_max_abs_passes() -> None:
    a = np.ones((1, 100))
    b = np.full((1, 100), 1.001)  # parallel: cosine 0, max-abs 1e-3, Euclidean 1e-2
    pair = compare_pair("a", a, "b", b, ["t"], Tolerance())
    assert not pair
    assert pair.delta(0).reasons == ["euclidean 0.01 > 0.005"]
    assert compare_pair("a", a, "b", b, ["t"], Tolerance.parse("euclidean=0.02"))


def test_stats_and_worst_texts() -> None:
    n = 20
    a = np.zeros((n, 2))
    a[:, 1] = 1.0
    b = a.copy()
    b[:, 0] = np.arange(n) / 1000  # text i has max-abs and Euclidean i/1000, cosine ~ 0
    pair = compare_pair("a", a, "b", b, [f"t{i}" for i in range(n)])
    stats = pair.stats()["max_abs"]
    assert stats.max == pytest.approx(0.019)
    assert stats.mean == pytest.approx(0.0095)
    assert stats.p50 == pytest.approx(0.0095)
    assert stats.p99 == pytest.approx(0.01881)
    assert pair.failures == 14  # 0.006 .. 0.019 exceed 5e-3
    worst = pair.worst()
    assert len(worst) == 10
    assert [w.index for w in worst[:3]] == [19, 18, 17]
    assert pair.min_tolerance()["max_abs"] == pytest.approx(0.019)
    assert "FAIL (14/20 texts)" in str(pair) and "#19" in str(pair)


def test_every_pair_is_compared_in_order() -> None:
    embeddings = {name: np.eye(3)[:2] * (i + 1) for i, name in enumerate("wxyz")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelfComparisonWarning)
        comparison = compare_all(embeddings, ["a", "b"])
    assert [(p.a, p.b) for p in comparison.pairs] == [
        ("w", "x"),
        ("w", "y"),
        ("w", "z"),
        ("x", "y"),
        ("x", "z"),
        ("y", "z"),
    ]
    assert not comparison


def test_bit_identical_differently_configured_adapters_warn() -> None:
    vectors = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    with pytest.warns(SelfComparisonWarning, match="a and b are configured differently"):
        compare_all(
            {"a": vectors, "b": vectors.copy()},
            ["x", "y", "z"],
            configs={"a": {"pooling": "cls"}, "b": {"pooling": "mean"}},
        )


def test_identical_configs_do_not_warn() -> None:
    vectors = np.ones((2, 4), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_all(
            {"a": vectors, "b": vectors}, ["x", "y"], configs={"a": {"k": 1}, "b": {"k": 1}}
        )
    assert result.passed


def test_configs_that_differ_only_in_label_adapter_or_versions_do_not_warn() -> None:
    vectors = np.ones((2, 4), dtype=np.float32)
    same = {"pooling": "mean", "normalize": True}
    configs = {
        "a": {**same, "label": "a", "adapter": "custom", "versions": {"torch": "1"}},
        "b": {**same, "label": "b", "adapter": "sbert", "versions": {"torch": "2"}},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compare_all({"a": vectors, "b": vectors}, ["x", "y"], configs=configs)


def test_a_long_worst_text_is_kept_as_preview_hash_and_length() -> None:
    text = "é" * 2_000_000 + "end"
    pair = compare_pair("a", np.zeros((1, 2)), "b", np.ones((1, 2)), [text])
    worst = pair.as_dict()["worst"][0]
    assert worst["text"] == "é" * 200 + "…"
    assert worst["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (worst["text_length"], worst["truncated"]) == (2_000_003, True)
    assert len(json.dumps(pair.as_dict())) < 5_000
    short = compare_pair("a", np.zeros((1, 2)), "b", np.ones((1, 2)), ["hi"]).as_dict()
    assert (short["worst"][0]["text"], short["worst"][0]["truncated"]) == ("hi", False)


class TokenDouble(Adapter):
    """Test double wired to one vector source: `strip` changes its tokens (and describe()),
    never its vectors, as a side wired to the other side's outputs would."""

    name = "token-double"
    summary = "test double"
    options: ClassVar[dict[str, Option]] = {
        "strip": Option(False, "strip", lambda r: r == "true"),
        "pooling": Option("mean", "pooling"),
    }

    def _load(self) -> None:
        pass

    def _embed(self, texts: list[str]) -> Any:
        return np.stack([np.full(3, float(len(t))) for t in texts])

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [list(t.strip() if self.config["strip"] else t) for t in texts]

    def _describe(self) -> dict[str, Any]:
        steps = ["strip"] if self.config["strip"] else []
        return {"preprocessing": steps, "pooling": self.config["pooling"]}


@pytest.mark.parametrize(
    ("second", "texts", "expected"),
    [
        ("token-double:strip=true", ["x", " y "], "although their tokens differ on 1 of 2 texts"),
        ("token-double:strip=true", ["x", "y"], None),  # the difference is never exercised
        ("token-double:pooling=cls", ["x", "y"], "although pooling should change the vectors"),
    ],
)
def test_self_comparison_warns_only_when_the_texts_exercise_the_difference(
    monkeypatch: pytest.MonkeyPatch,
    tiny_models: dict[str, Path],
    second: str,
    texts: list[str],
    expected: str | None,
) -> None:
    monkeypatch.setitem(REGISTRY, "token-double", TokenDouble)
    specs = parse_specs(["token-double", second])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(specs, texts, model=tiny_models["wordpiece"])
    messages = [str(w.message) for w in caught if w.category is SelfComparisonWarning]
    if expected is None:
        assert messages == []
    else:
        assert len(messages) == 1 and expected in messages[0], messages


def test_langchain_newline_on_wordpiece_is_not_a_self_comparison(
    tiny_models: dict[str, Path],
) -> None:
    """LangChain replaces "\\n" with " ", which a WordPiece tokenizer cannot tell apart: the
    vectors are bit-identical and that is no sign of miswiring (every default run warned)."""
    texts = ["line one\nline two", "a\n\nb", "plain"]
    specs = parse_specs(["sentence-transformers", "langchain"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelfComparisonWarning)
        result = run(specs, texts, model=tiny_models["wordpiece"])
    a, b = result.embeddings.values()
    assert np.array_equal(a, b)
    assert (
        result.configs["langchain"]["preprocessing"]
        != result.configs["sentence-transformers"]["preprocessing"]
    )


def test_custom_lowercases_when_the_model_says_do_lower_case(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    model = Path(shutil.copytree(tiny_models["bpe"], tmp_path / "lower"))
    config = json.loads((model / "sentence_bert_config.json").read_text())
    (model / "sentence_bert_config.json").write_text(json.dumps({**config, "do_lower_case": True}))
    texts = ["Hello World", "The QUICK Cat", "ΟΔΟΣ", "already lower"]
    specs = parse_specs(["sentence-transformers", "custom", "custom:lowercase=false"])
    result = run(specs, texts, model=model)
    st_vs_custom, st_vs_cased = result.comparison.pairs[0], result.comparison.pairs[1]
    assert st_vs_custom.passed, str(st_vs_custom)
    assert st_vs_cased.failing_indices() == [0, 1, 2]
    assert result.configs["custom"]["preprocessing"] == ["lowercase"]
    assert result.configs["custom:lowercase=false"]["preprocessing"] == []
    assert "lowercase" in result.configs["sentence-transformers"]["preprocessing"]
