"""Diagnosis of stacks that show nothing but their vectors: dimensions, scale, tokenizer
normalization, batch dependence and nondeterminism, each measured through embed() alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from diagnosed_run import diagnosed

import parity
from parity.adapters import REGISTRY
from parity.adapters.base import Adapter, Option
from parity.cli import main
from parity.diagnose import projection
from parity.diagnose.causes import Side, unit, within
from parity.diagnose.opaque import (
    constant_factor,
    factor_fix,
    is_opaque,
    strip_accents,
    swap_symbols,
)
from parity.diagnose.projection import dense_chain
from parity.metrics import Tolerance
from parity.modelinfo import read_model_info

DEFECTS = ("none", "train-mode", "pad-pooling", "keep-accents", "scaled")
RATIO = 9.43  # the constant ratio reported in llama_index #8143 and infinity #384


def parse_defects(raw: str) -> tuple[str, ...]:
    """One defect, or several joined by "+"."""
    found = tuple(raw.split("+"))
    unknown = [d for d in found if d not in DEFECTS]
    if unknown:
        raise ValueError(f"unknown defect {unknown[0]!r}; choose from {', '.join(DEFECTS)}")
    return found


class OpaqueEncoder(Adapter):
    """A hand-written production encoder (AutoTokenizer + AutoModel + mean pooling) on a real
    model that exposes neither stages, tokens nor settings, as an HTTP server or a plugin would,
    with one of the defects users filed: left in train mode (dropout), pooling over padding,
    a tokenizer that lost strip_accents (Ollama #15609), vectors scaled by a constant. It
    ignores Dense modules (llama_index #9074)."""

    name = "opaque-encoder"
    summary = "test stack: vectors only"
    requires = ("torch", "transformers")
    options: ClassVar[dict[str, Option]] = {
        "defect": Option(("none",), "what this stack gets wrong (a+b: both)", parse_defects)
    }

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        defect = self.config["defect"]
        self.tok = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        if "keep-accents" in defect:
            from tokenizers.normalizers import BertNormalizer

            normalizer = BertNormalizer(lowercase=True, strip_accents=False)
            self.tok.backend_tokenizer.normalizer = normalizer
        extra: dict[str, Any] = {"hidden_dropout_prob": 0.3} if "train-mode" in defect else {}
        self.net = AutoModel.from_pretrained(self.model, local_files_only=True, **extra)
        self.net.train("train-mode" in defect)
        self.normalize = read_model_info(self.model).normalize
        self.torch = torch

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self.torch.no_grad():
            batch = self.tok(texts, padding=True, truncation=True, return_tensors="pt")
            hidden = self.net(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            if "pad-pooling" in self.config["defect"]:
                mask = self.torch.ones_like(mask)
            pooled = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        if self.normalize:
            pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled * (RATIO if "scaled" in self.config["defect"] else 1.0)

    def _describe(self) -> dict[str, Any]:
        return {}


@pytest.fixture(autouse=True)
def opaque_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "opaque-encoder", OpaqueEncoder)


def with_dense(source: Path, out: Path, features: int) -> Path:
    """`source` with a Dense layer (hidden -> features, Tanh) before its Normalize, saved by
    sentence-transformers: the shape of models like LaBSE or the multilingual distiluse."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    st = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    torch.manual_seed(1)
    dense = Dense(st.get_embedding_dimension(), features)
    SentenceTransformer(modules=[st[0], st[1], dense, Normalize()], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="module")
def dense_models(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("dense")
    return {n: with_dense(bpe_model, root / f"dense{n}", n) for n in (32, 16)}


TEXTS = ["the cat sat on the mat", "hello world", "search index query", "tea and coffee at noon"]
# lengths differ, so the shorter texts are padded inside a batch
UNEVEN = ["hi", "the cat sat on the mat by the river in the city", "tea", "search index"]
ACCENTED = ["café naïve", "résumé à la carte", "crème brûlée", "the cat"]


# --- the pure checks ---------------------------------------------------------------------


def test_constant_factor_finds_one_ratio_and_refuses_a_varying_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 16))
    ok, ratio = constant_factor(x * 9.43, x, Tolerance())
    assert ok.all() and ratio == pytest.approx(9.43)
    ok, _ = constant_factor(x * np.arange(1, 6)[:, None], x, Tolerance())
    assert ok.sum() == 1  # only the median row's own ratio matches the median
    ok, ratio = constant_factor(rng.normal(size=(5, 16)), x, Tolerance())
    assert not ok.any() and np.isnan(ratio)  # other directions: not a factor


def test_noise_on_vectors_without_a_normalize_module_is_not_a_constant_factor() -> None:
    # norm-8 vectors (a model without Normalize) plus fp16-sized noise: scaled to unit length
    # the noise shrinks eightfold and the directions "align", the norm ratios sit near 1; no
    # factor reproduces the other side, so this is no normalization cause
    rng = np.random.default_rng(0)
    y = unit(rng.normal(size=(20, 384))) * 8.0
    x = y + rng.normal(scale=2e-3, size=y.shape)
    failing = ~within(x, y, Tolerance())
    assert failing.sum() == 20
    ok, ratio = constant_factor(x, y, Tolerance())
    assert not ok.any() and np.isnan(ratio)


def test_a_small_real_factor_is_found_and_one_that_does_not_reproduce_is_not() -> None:
    rng = np.random.default_rng(1)
    y = unit(rng.normal(size=(6, 384))) * 8.0
    ok, ratio = constant_factor(y * 1.01, y, Tolerance())
    assert ok.all() and ratio == pytest.approx(1.01)
    # the lengths differ by 9.43, but noise on top leaves the texts apart even after scaling
    noisy = (y + rng.normal(scale=2e-3, size=y.shape)) * 9.43
    ok, _ = constant_factor(noisy, y, Tolerance())
    assert not ok.any()


def side(label: str, spec: str, vectors: np.ndarray, config: dict[str, Any]) -> Side:
    """A side for the fix rule: a real adapter spec (never loaded) and its described config."""
    from parity.adapters import AdapterSpec

    built = AdapterSpec.parse(spec).build("model")
    return Side(label, AdapterSpec.parse(spec), built, vectors, config)


def test_the_factor_fix_never_moves_the_side_that_matches_the_model() -> None:
    raw = np.full((2, 4), 3.0)
    st = side("st", "sentence-transformers", raw, {"normalize": False})
    stack = side("stack", "http:url=http://127.0.0.1:9/v1/embeddings", raw * 9.43,
                 {"protocol": "openai", "normalize": None})  # fmt: skip
    assert factor_fix(stack, st, 9.43, False) == (
        "stack returns st's vectors times 9.43 (the model has no Normalize module and st, "
        "normalize=false, matches it): find where stack rescales its output and remove that, "
        "or compare with cosine only"
    )
    # the model normalizes and neither side does: both depart; openai has no normalize option
    tei = side("tei", "http:url=http://127.0.0.1:9/embed,protocol=tei", raw,
               {"protocol": "tei", "normalize": False})  # fmt: skip
    assert factor_fix(stack, tei, 9.43, True) == (
        "normalize stack's vectors to unit length yourself (its protocol has no normalize "
        "option); set normalize=true on tei (the model has a Normalize module and neither "
        "side returns unit vectors)"
    )


def test_the_factor_fix_where_the_model_is_unknown_or_a_side_claims_unit_vectors() -> None:
    raw = np.full((2, 4), 3.0)
    a = side("a", "sentence-transformers", raw * 2.0, {"normalize": True})  # says unit, is not
    b = side("b", "sentence-transformers", raw, {"normalize": False})
    assert factor_fix(a, b, 2.0, True) == (
        "find where a rescales its output after normalizing (normalize=true); set "
        "normalize=true on b (the model has a Normalize module and neither side returns unit "
        "vectors)"
    )
    assert factor_fix(a, b, 2.0, None) == (
        "one side rescales its output (the model is not known here, and neither side is shown "
        "to match it): find which and remove that, or compare with cosine only"
    )


def test_a_unit_side_and_a_multiple_of_it_take_the_unit_rule_without_openai_options() -> None:
    # the model normalizes, st returns unit vectors, the server 9.43 times them over the openai
    # protocol, which sends no normalize: the server departs and has no option to set
    vectors = unit(np.arange(1.0, 9.0).reshape(2, 4))
    st = side("st", "sentence-transformers", vectors, {"normalize": True})
    server = side("server", "http:url=http://127.0.0.1:9/v1/embeddings", vectors * 9.43,
                  {"protocol": "openai", "normalize": None})  # fmt: skip
    assert factor_fix(server, st, 9.43, True) == (
        "server does not normalize its output and has no option to turn it on (the model has "
        "a Normalize module, so server is the side that departs); normalize server's vectors "
        "to unit length yourself, or compare with cosine"
    )


def test_tokenizer_transforms() -> None:
    assert strip_accents("Crème brûlée, naïve café") == "Creme brulee, naive cafe"
    assert swap_symbols("ok 😀 and ☃!") == "ok ☃ and ☄!"
    assert swap_symbols("plain text, ascii!") == "plain text, ascii!"


def test_dense_chain_reads_modules_json(dense_models: dict[int, Path], bpe_model: Path) -> None:
    chain = dense_chain(str(dense_models[32]))
    assert chain is not None
    assert (chain.paths, chain.in_features, chain.out_features) == (["2_Dense"], 64, 32)
    assert dense_chain(str(bpe_model)) is None
    assert dense_chain("not-a-directory") is None


def test_only_a_side_with_stages_is_not_opaque(bpe_model: Path) -> None:
    from parity.adapters import AdapterSpec

    assert is_opaque(OpaqueEncoder(bpe_model))
    assert is_opaque(AdapterSpec.parse("sentence-transformers").build(bpe_model))
    assert not is_opaque(AdapterSpec.parse("custom").build(bpe_model))


# --- real stacks ---------------------------------------------------------------------------


def test_dense_applied_on_one_side_only_is_a_measured_projection(
    dense_models: dict[int, Path],
) -> None:
    pair = diagnosed(dense_models[32], ["sentence-transformers", "opaque-encoder"], TEXTS)
    causes = pair.causes
    assert pair.failures == len(TEXTS)
    assert pair.dimensions == {"a": 32, "b": 64}
    assert [(c["cause"], c["evidence"]) for c in causes] == [("projection", "measured")]
    cause = causes[0]
    assert cause["detail"] == (
        "sentence-transformers returns 32 dimensions, opaque-encoder 64: the model's 2_Dense "
        "(64 -> 32) is applied by sentence-transformers only."
    )
    assert (
        "the model loaded without 2_Dense reproduced opaque-encoder on 4/4 texts"
        in (cause["basis"])
    )
    assert cause["fix"].startswith("apply the model's 2_Dense after pooling on opaque-encoder")


@pytest.mark.slow  # an ONNX export: seconds on two cores
def test_an_onnx_export_without_the_dense_head_is_a_measured_projection(
    dense_models: dict[int, Path], bpe_model: Path, tmp_path: Path
) -> None:
    # the reference model is the BPE tiny model plus a Dense head; the stack in production runs
    # an ONNX export of the base model (export-onnx carries Transformer, Pooling, Normalize only)
    from parity.export import export_onnx

    exported = export_onnx(bpe_model, tmp_path / "onnx")
    pair = diagnosed(dense_models[32], ["sentence-transformers", f"onnx:model={exported}"], TEXTS)
    causes = pair.causes
    assert pair.dimensions == {"a": 32, "b": 64}
    assert [(c["cause"], c["evidence"]) for c in causes] == [("projection", "measured")]
    assert f"reproduced onnx:model={exported} on 4/4 texts" in causes[0]["basis"]


def test_a_projection_the_model_without_dense_does_not_reproduce_is_inferred(
    dense_models: dict[int, Path],
) -> None:
    # the stack skips the Dense layer AND scales its vectors: the model without 2_Dense gives
    # unit vectors, the stack 9.43 times them, so the reproduction fails on every text
    pair = diagnosed(
        dense_models[32], ["sentence-transformers", "opaque-encoder:defect=scaled"], TEXTS
    )
    causes = pair.causes
    assert pair.dimensions == {"a": 32, "b": 64}
    assert [(c["cause"], c["evidence"], c["explained"]) for c in causes] == [
        ("projection", "inferred", len(TEXTS))
    ]
    assert causes[0]["basis"] == (
        "the model's 2_Dense maps 64 to 32 dimensions, the two sides' dimensions; the model "
        "loaded without 2_Dense did not reproduce opaque-encoder:defect=scaled on these texts, "
        "so that this layer is the difference is inferred"
    )


def test_a_projection_whose_reproduction_crashes_is_inferred_and_says_why(
    dense_models: dict[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any) -> None:
        raise RuntimeError("cannot load the model")

    monkeypatch.setattr(projection, "_reproduce_projection", crash)
    pair = diagnosed(dense_models[32], ["sentence-transformers", "opaque-encoder"], TEXTS)
    causes = pair.causes
    assert pair.dimensions == {"a": 32, "b": 64}
    assert [(c["cause"], c["evidence"], c["explained"]) for c in causes] == [
        ("projection", "inferred", len(TEXTS))
    ]
    assert causes[0]["basis"] == (
        "the model's 2_Dense maps 64 to 32 dimensions, the two sides' dimensions; the model "
        "without 2_Dense could not be run to check (RuntimeError: cannot load the model), so "
        "that this layer is the difference is inferred"
    )


def test_dimensions_no_dense_explains_are_an_inferred_other_model(
    dense_models: dict[int, Path],
) -> None:
    specs = [
        f"sentence-transformers:model={dense_models[32]},label=st32",
        f"sentence-transformers:model={dense_models[16]},label=st16",
    ]
    pair = diagnosed(dense_models[32], specs, TEXTS)
    causes = pair.causes
    assert pair.dimensions == {"a": 32, "b": 16}
    assert [(c["cause"], c["evidence"]) for c in causes] == [("model-files", "inferred")]
    assert causes[0]["explained"] == len(TEXTS)
    assert "they do not run the same model" in causes[0]["detail"]


def test_dimension_mismatch_from_the_cli_is_a_finding_exit_1(
    dense_models: dict[int, Path], tmp_path: Path
) -> None:
    # custom (AutoModel + pooling) skips the Dense module: 64 against sentence-transformers' 32
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", "--model", str(dense_models[32]), "--texts", str(texts), "--out", str(out)]
    code = main([*argv, "--quiet", "--adapter", "sentence-transformers", "--adapter", "custom"])
    assert code == 1
    pair = json.loads((out / "summary.json").read_text())["pairs"][0]
    assert pair["dimensions"] == {"a": 32, "b": 64}
    assert pair["failures"] == len(TEXTS)
    assert pair["worst"][0]["failed_metrics"] == ["dimension"]
    assert [(c["cause"], c["evidence"]) for c in pair["causes"]] == [("projection", "measured")]
    # every text failed for the dimension, not for a metric: summary.json and the rows agree
    assert pair["decided_by"] == {
        "max_abs": 0, "cosine": 0, "euclidean": 0, "non-finite": 0, "dimension": len(TEXTS)
    }  # fmt: skip
    rows = parity.load_results(out)
    assert rows["deciding_metric"].tolist() == ["dimension"] * len(TEXTS)


def test_a_side_left_in_train_mode_is_measured_nondeterminism(bpe_model: Path) -> None:
    pair = diagnosed(
        bpe_model, ["sentence-transformers", "opaque-encoder:defect=train-mode"], TEXTS
    )
    causes = pair.causes
    assert pair.failures == len(TEXTS)
    assert [(c["cause"], c["evidence"]) for c in causes] == [("nondeterminism", "measured")]
    assert causes[0]["detail"].startswith(
        "opaque-encoder:defect=train-mode returns different vectors for the same request"
    )
    assert causes[0]["stage"] is None


def test_once_one_side_explains_every_text_no_probe_runs_on_nothing(bpe_model: Path) -> None:
    # side a's repeat probe explains every text: b's repeat and both "alone" probes have
    # nothing left and must not run (embed([]) would raise, np.stack([]) too)
    pair = diagnosed(
        bpe_model, ["opaque-encoder:defect=train-mode", "sentence-transformers"], TEXTS
    )
    causes = pair.causes
    assert [(c["cause"], c["evidence"]) for c in causes] == [("nondeterminism", "measured")]
    opaque = [
        p
        for p in pair.diagnosis["probes"]
        if "the same request twice" in p["probe"] or "each text alone" in p["probe"]
    ]
    assert opaque == [
        {"probe": "opaque-encoder:defect=train-mode: the same request twice", "tried": 4,
         "explained": 4}
    ]  # fmt: skip


def test_pooling_over_padding_is_measured_batch_dependence(bpe_model: Path) -> None:
    pair = diagnosed(
        bpe_model, ["sentence-transformers", "opaque-encoder:defect=pad-pooling"], UNEVEN
    )
    causes = pair.causes
    # the longest text has no padding in the batch: it matches; the three others do not
    assert pair.failures == 3
    assert [(c["cause"], c["evidence"], c["explained"]) for c in causes] == [
        ("batch-dependence", "measured", 3)
    ]
    cause = causes[0]
    assert "alone it matches sentence-transformers" in cause["detail"]
    assert "given each text alone reproduced sentence-transformers on 3/3 texts" in cause["basis"]


def test_a_tokenizer_that_lost_strip_accents_is_a_measured_tokenizer_cause(
    tiny_models: dict[str, Path],
) -> None:
    pair = diagnosed(
        tiny_models["wordpiece"],
        ["sentence-transformers", "opaque-encoder:defect=keep-accents"],
        ACCENTED,
    )
    causes = pair.causes
    assert pair.failures == 3  # "the cat" has no accent
    assert [(c["cause"], c["evidence"], c["explained"]) for c in causes] == [
        ("tokenizer", "measured", 3)
    ]
    assert causes[0]["detail"] == (
        "sentence-transformers's tokenizer strips accents, opaque-encoder:defect=keep-accents's "
        "does not (e.g. 'café naïve')."
    )
    assert "apply strip_accents to texts before opaque-encoder" in causes[0]["fix"]


def test_a_tokenizer_difference_not_reproduced_is_inferred_with_its_basis(
    tiny_models: dict[str, Path],
) -> None:
    # the stack keeps accents AND scales its vectors: given stripped text it still does not
    # reproduce sentence-transformers, so the tokenizer difference is measured, its effect not
    pair = diagnosed(
        tiny_models["wordpiece"],
        ["sentence-transformers", "opaque-encoder:defect=keep-accents+scaled,label=stack"],
        ACCENTED,
    )
    causes = pair.causes
    assert pair.failures == 4  # "the cat" fails too: scaled
    tokenizer = [c for c in causes if c["cause"] == "tokenizer"]
    assert [(c["evidence"], c["explained"]) for c in tokenizer] == [("inferred", 3)]
    assert tokenizer[0]["basis"] == (
        "sentence-transformers gave strip_accents(text) and the text one vector, stack did not "
        "(measured on 3 texts); stack given strip_accents(text) did not reproduce "
        "sentence-transformers, so that this difference makes them fail is inferred"
    )
    assert ("normalization", "measured", 1) in [
        (c["cause"], c["evidence"], c["explained"]) for c in causes
    ]


def test_vectors_scaled_by_a_constant_are_a_measured_normalization(
    tiny_models: dict[str, Path],
) -> None:
    # WordPiece tiny model: no Normalize module, so neither side returns unit vectors
    pair = diagnosed(
        tiny_models["wordpiece"], ["opaque-encoder:defect=scaled", "sentence-transformers"], TEXTS
    )
    causes = pair.causes
    assert pair.failures == len(TEXTS)
    assert [(c["cause"], c["evidence"]) for c in causes] == [("normalization", "measured")]
    assert causes[0]["detail"] == (
        "opaque-encoder:defect=scaled's vectors are sentence-transformers's scaled by a "
        "constant factor 9.43: same directions, different lengths."
    )
    assert "on 4/4 texts" in causes[0]["basis"]
    # the model has no Normalize module and sentence-transformers (normalize=false) matches it:
    # the stack that scales is the one to change, never normalize=true on the matching side
    assert causes[0]["fix"] == (
        "opaque-encoder:defect=scaled returns sentence-transformers' vectors times 9.43 (the "
        "model has no Normalize module and sentence-transformers, normalize=false, matches it): "
        "find where opaque-encoder:defect=scaled rescales its output and remove that, or "
        "compare with cosine only"
    )


def test_a_stack_that_truncates_later_is_a_measured_truncation(bpe_model: Path) -> None:
    # sentence-transformers truncates at the model's max_seq_length (128); this stack at the
    # tokenizer's model_max_length (512), and shows no max_length to rebuild
    long = ["word " * 150 + "tail", "the river " * 90]
    pair = diagnosed(bpe_model, ["sentence-transformers", "opaque-encoder"], long + TEXTS)
    causes = pair.causes
    assert pair.failures == 2
    assert [(c["cause"], c["evidence"], c["explained"]) for c in causes] == [
        ("truncation", "measured", 2)
    ]
    assert causes[0]["detail"] == (
        "sentence-transformers truncates at 128 tokens, opaque-encoder later."
    )
    assert causes[0]["fix"].startswith("truncate at 128 tokens on opaque-encoder")
    assert (
        "given each text cut at 128 tokens reproduced sentence-transformers on 2/2"
        in (causes[0]["basis"])
    )


def test_a_matching_opaque_stack_passes_without_extra_probes(bpe_model: Path) -> None:
    pair = diagnosed(bpe_model, ["sentence-transformers", "opaque-encoder"], TEXTS)
    causes = pair.causes
    assert pair.passed and causes == []
