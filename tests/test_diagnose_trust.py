"""A cause is never a guess presented as a measurement: evidence, premises, fixes, combined probes.

Everything here runs on the tiny models (seconds); the wordpiece one has no Normalize module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from diagnosed_run import diagnosed

from parity.adapters import Adapter, AdapterSpec
from parity.adapters.base import Option
from parity.assertions import failure_message
from parity.cli import main
from parity.compare import compare_pair
from parity.diagnose import Side, diagnose_pair
from parity.gate.explain import environment_cause, is_model_file
from parity.metrics import Tolerance
from parity.texts import builtin_corpus

PLAIN = ["the cat sat on the mat", "hello world", "search index query", "tea and coffee"]
LONG = ["word " * 150 + "tail", "the river " * 90]  # past the tiny models' 128 tokens
CORPUS = list(builtin_corpus())[:24]


def counts(pair: Any) -> list[tuple[str, int]]:
    return [("+".join([c["cause"], *c.get("also", [])]), c["explained"]) for c in pair.causes]


@pytest.fixture(scope="module")
def wordpiece(tiny_models: dict[str, Path]) -> Path:
    modules = json.loads((tiny_models["wordpiece"] / "modules.json").read_text())
    assert not any("Normalize" in m["type"] for m in modules)  # the premise of these tests
    return tiny_models["wordpiece"]


# --- 4. probes run only where their premise holds -------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_a_non_normalizing_model_is_dtype(wordpiece: Path, dtype: str) -> None:
    pair = diagnosed(wordpiece, ["sentence-transformers", f"custom:dtype={dtype}"], CORPUS)
    assert pair.failures == len(CORPUS)
    assert counts(pair) == [("dtype", len(CORPUS))]
    (cause,) = pair.causes
    assert cause["evidence"] == "measured"
    assert cause["basis"] == (
        f"custom:dtype={dtype} rebuilt with dtype=float32 reproduced sentence-transformers on "
        f"{len(CORPUS)}/{len(CORPUS)} texts"
    )
    assert cause["fix"].startswith(f"set dtype=float32 on custom:dtype={dtype}")
    skipped = {p["probe"]: p.get("skipped") for p in pair.diagnosis["probes"]}
    assert skipped["unit re-normalization"] == (
        "the sides agree on whether they return unit vectors on every failing text"
    )


def test_normalization_names_the_side_that_departs_from_the_model(wordpiece: Path) -> None:
    pair = diagnosed(wordpiece, ["sentence-transformers", "custom:normalize=true"], PLAIN)
    assert counts(pair) == [("normalization", 4)]
    cause = pair.causes[0]
    assert cause["detail"].startswith(
        "custom:normalize=true returns unit vectors, sentence-transformers does not (norms "
    )
    assert "normalize=False" not in cause["detail"]
    assert cause["fix"] == (
        "set normalize=false on custom:normalize=true (the model has no Normalize module)"
    )
    assert cause["evidence"] == "measured"


@pytest.mark.parametrize("order", [1, -1])
def test_a_departing_side_without_a_normalize_option_is_named_not_moved(
    wordpiece: Path, order: int
) -> None:
    """bcembedding normalizes, the model does not: sentence-transformers matches the model, so the
    fix must not tell it to normalize as if it were the culprit."""
    pair = diagnosed(
        wordpiece, ["bcembedding:pooling=mean", "sentence-transformers"][::order], PLAIN
    )
    assert counts(pair) == [("normalization", 4)]
    assert pair.causes[0]["fix"] == (
        "bcembedding:pooling=mean normalizes its output and has no option to turn it off (the "
        "model has no Normalize module, so bcembedding:pooling=mean is the side that departs); "
        "normalize sentence-transformers' vectors (normalize=true) only if you compare against "
        "bcembedding:pooling=mean, or compare with cosine"
    )


# --- 5. non-finite rows are measured findings, before any other probe -----------------------


def test_nan_rows_get_cause_non_finite_and_no_other_probe_sees_them(
    wordpiece: Path, embedder: Any
) -> None:
    texts = PLAIN
    spec_a, spec_b = (
        AdapterSpec.parse("sentence-transformers"),
        AdapterSpec.parse("custom:dtype=float16"),
    )
    with spec_a.build(wordpiece) as a, spec_b.build(wordpiece) as b:
        vectors_b = b.embed(texts)
        vectors_b[1] = np.nan  # what an fp16 overflow leaves behind
        vectors_b[3, 0] = np.inf
        sides = [
            Side(spec_a.label, spec_a, a, a.embed(texts), a.describe()),
            Side(spec_b.label, spec_b, b, vectors_b, b.describe()),
        ]
        pair = compare_pair(sides[0].label, sides[0].vectors, sides[1].label, vectors_b, texts)
        found = diagnose_pair(*sides, texts, pair, str(wordpiece), Tolerance(), lambda m: None)
    by_name = {c.name: c for c in found.causes}
    assert {c.name: c.explained for c in found.causes} == {"non-finite": 2, "dtype": 2}
    nan = by_name["non-finite"]
    assert sorted(nan.indices) == [1, 3]
    assert nan.evidence == "measured"
    # the NaN/Inf was injected after the fact: re-running the stages does not reproduce it, so
    # neither a stage nor a confirmed overflow is claimed
    assert nan.stage is None
    assert nan.detail == (
        "custom:dtype=float16 returns NaN or Inf for 2 texts (dtype float16); seen in the "
        "returned vectors but not reproduced in the stages on re-run."
    )
    assert nan.fix == (
        "custom:dtype=float16 runs float16, which overflows past 65504: try dtype=float32 or "
        "bfloat16 on it (the NaN/Inf was not reproduced on re-run, so overflow is not confirmed)"
    )
    # every later probe tried only the two finite failing texts
    tried = [
        p["tried"]
        for p in found.probes
        if "tried" in p and p["probe"] != "custom:dtype=float16: NaN/Inf in the output"
    ]
    assert tried and max(tried) == 2


@pytest.fixture(scope="module")
def overflowing(wordpiece: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wordpiece model with word embeddings past float16's range (inf once cast)."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("overflow") / "model"
    shutil.copytree(wordpiece, out)
    tensors = load_file(out / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    tensors[key] = (tensors[key] * 1e6).astype(tensors[key].dtype)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_an_fp16_overflow_run_is_a_non_finite_finding(overflowing: Path) -> None:
    pair = diagnosed(overflowing, ["sentence-transformers", "custom:dtype=float16"], PLAIN)
    assert pair.failures == 4
    assert counts(pair) == [("non-finite", 4)]
    cause = pair.causes[0]
    assert (cause["stage"], cause["evidence"]) == ("token_embeddings", "measured")
    assert cause["detail"].endswith("the re-run stages reproduce it, first at token_embeddings.")
    assert cause["fix"] == "fp16 overflow: set dtype=float32 or bfloat16 on custom:dtype=float16"


# --- 10. fixes point at the model's configuration; combined probes ---------------------------


def test_truncation_fix_moves_the_side_that_departs_from_the_model(bpe_model: Path) -> None:
    pair = diagnosed(bpe_model, ["custom", "bcembedding:pooling=mean"], LONG + PLAIN)
    assert counts(pair) == [("truncation", 2)]
    assert pair.causes[0]["fix"] == (
        "set max_length=128 on bcembedding:pooling=mean (the model is configured for 128 tokens)"
    )


def test_two_causes_on_one_text_are_found_together_and_counts_add_up(bpe_model: Path) -> None:
    pair = diagnosed(bpe_model, ["bcembedding", "sentence-transformers"], PLAIN + LONG)
    assert counts(pair) == [("pooling", 4), ("pooling+truncation", 2)]
    combined = pair.causes[1]
    assert combined["evidence"] == "measured"
    assert combined["stage"] == "input_ids"
    assert combined["basis"] == (
        "bcembedding rebuilt with pooling=mean, max_length=128 reproduced sentence-transformers "
        "on 2/2 texts"
    )
    assert combined["fix"] == (
        "set pooling=mean on bcembedding (the model's 1_Pooling config says mean); and set "
        "max_length=128 on bcembedding (the model is configured for 128 tokens)"
    )
    assert all("parity diagnose" not in c["fix"] for c in pair.causes)


def test_a_preprocessing_step_and_a_setting_together_are_one_measured_cause(
    bpe_model: Path,
) -> None:
    """One side strips, the other pools by CLS: no single probe reproduces an edge-whitespace text."""
    edge = ["  hello world", "hello world  ", "\tfoo bar\n", "plain text", " x ", "tail\n"]
    pair = diagnosed(bpe_model, ["custom:strip=true", "custom:pooling=cls"], edge)
    assert counts(pair) == [("strip+pooling", 5), ("pooling", 1)]
    cause = pair.causes[0]
    assert cause["evidence"] == "measured"
    assert cause["basis"] == (
        "custom:pooling=cls rebuilt with pooling=mean and given strip(text) reproduced "
        "custom:strip=true on 5/5 texts"
    )
    assert cause["fix"] == (
        "set strip=false on custom:strip=true, or strip texts before custom:pooling=cls; and set "
        "pooling=mean on custom:pooling=cls (the model's 1_Pooling config says mean)"
    )


def test_settings_and_normalization_together_are_one_measured_cause(wordpiece: Path) -> None:
    pair = diagnosed(wordpiece, ["bcembedding", "sentence-transformers"], PLAIN)
    assert counts(pair) == [("pooling+normalization", 4)]
    cause = pair.causes[0]
    assert cause["fix"] == (
        "set pooling=mean on bcembedding (the model's 1_Pooling config says mean); and "
        "bcembedding normalizes its output and has no option to turn it off (the model has no "
        "Normalize module, so bcembedding is the side that departs); normalize "
        "sentence-transformers' vectors (normalize=true) only if you compare against bcembedding, "
        "or compare with cosine"
    )
    assert cause["basis"] == (
        "bcembedding rebuilt with pooling=mean reproduced sentence-transformers up to vector "
        "length on 4/4 texts"
    )


def test_gate_fix_restores_the_current_side_never_the_baseline(
    bpe_model: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "t.jsonl"
    texts.write_text("".join(json.dumps(t) + "\n" for t in LONG + PLAIN), encoding="utf-8")
    create = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
    assert main([*create, "--out", str(tmp_path / "b"), "--adapter", "custom", "--quiet"]) == 0
    gate = ["gate", "--baseline", str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*gate, "--adapter", "custom:max_length=64"]) == 1
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    pair = next(p for p in summary["pairs"] if p["failures"])
    assert [(c["cause"], c["explained"]) for c in pair["causes"]] == [("truncation", 2)]
    fix = pair["causes"][0]["fix"]
    assert fix.startswith(
        "set max_length=128 on custom:max_length=64 (the model is configured for 128 tokens)"
    )
    assert "baseline:" not in fix


# --- 13. probes an adapter cannot express are skipped, with why ------------------------------


class PlainAdapter(Adapter):
    """An adapter with no max_length, pooling or dtype option: custom's vectors, dims rotated."""

    name = "plain-test"
    summary = "test double"
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, inner: Adapter) -> None:
        super().__init__("unused", label="plain-test")
        self.inner = inner

    def _load(self) -> None:
        self.inner.load()

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.roll(self.inner.embed(texts), 1, axis=1)  # no re-scaling undoes this

    def _describe(self) -> dict[str, Any]:
        return {}  # no max_length, pooling, dtype known


def test_probes_an_adapter_cannot_express_are_skipped(wordpiece: Path) -> None:
    spec = AdapterSpec.parse("custom")
    with spec.build(wordpiece) as custom:
        plain = PlainAdapter(custom)
        sides = [
            Side(
                "plain-test", AdapterSpec("plain-test"), plain, plain.embed(PLAIN), plain.describe()
            ),
            Side("custom", spec, custom, custom.embed(PLAIN), custom.describe()),
        ]
        pair = compare_pair("plain-test", sides[0].vectors, "custom", sides[1].vectors, PLAIN)
        found = diagnose_pair(*sides, PLAIN, pair, str(wordpiece), Tolerance(), lambda m: None)
    assert [(c.cause, c.explained, c.evidence) for c in found.causes] == [
        ("unknown", 4, "inferred")
    ]
    skipped = {p["probe"]: p["skipped"] for p in found.probes if "skipped" in p}
    assert skipped["plain-test: max_length=128"] == "plain-test has no max_length option"
    assert skipped["custom: max_length=None"] == "plain-test reports no max_length"
    assert skipped["custom: pooling=None"] == "plain-test reports no pooling"


def test_assertion_message_marks_an_inferred_cause(wordpiece: Path) -> None:
    spec = AdapterSpec.parse("custom")
    with spec.build(wordpiece) as custom:
        plain = PlainAdapter(custom)
        adapters = {"plain-test": plain, "custom": custom}
        texts = ["hello world"]
        pair = compare_pair("plain-test", plain.embed(texts), "custom", custom.embed(texts), texts)
        message = failure_message(pair, pair.worst(1)[0], adapters, Tolerance(), None)
    assert "top cause: inferred: unknown: 1 failing texts match no known cause" in message
    assert "parity diagnose" not in message


# --- 3. inferred gate causes name only what can matter -------------------------------------

ST_VERSIONS = {"python": "3.12", "torch": "2.13", "transformers": "5.24", "tokenizers": "0.22"}


def env(changed: list[str] = (), libraries: dict[str, list[str]] | None = None) -> dict:  # type: ignore[assignment]
    libraries = libraries or {}
    return {
        "model_files": {"changed": list(changed), "added": [], "removed": []},
        "libraries": libraries,
        "lines": [f"{k} {a} -> {b}" for k, (a, b) in libraries.items()]
        + [f"model file hash changed: {f}" for f in changed],
    }


@pytest.mark.parametrize(
    ("path", "counts_as_model"),
    [
        ("model.safetensors", True),
        ("pytorch_model.bin", True),
        ("onnx/model.onnx", True),
        ("tokenizer.json", True),
        ("tokenizer_config.json", True),
        ("vocab.txt", True),
        ("config.json", True),
        ("config_sentence_transformers.json", True),
        ("sentence_bert_config.json", True),
        ("1_Pooling/config.json", True),
        ("README.md", False),
        (".gitattributes", False),
        ("data_config.json", False),
        ("train_script.py", False),
    ],
)
def test_model_files_are_weights_tokenizer_and_config(path: str, counts_as_model: bool) -> None:
    assert is_model_file(path) is counts_as_model


def test_a_readme_change_is_not_model_files() -> None:
    cause = environment_cause(
        [0, 1], env(["README.md", ".gitattributes"]), [{"versions": ST_VERSIONS}]
    )
    assert (cause.cause, cause.evidence) == ("environment", "inferred")
    assert "not model files: README.md, .gitattributes" in cause.basis


def test_changed_weights_are_named_and_inferred() -> None:
    cause = environment_cause(
        [0], env(["README.md", "model.safetensors"]), [{"versions": ST_VERSIONS}]
    )
    assert (cause.cause, cause.evidence) == ("model-files", "inferred")
    assert (
        cause.detail == "the model files differ from the baseline's: model.safetensors (changed)."
    )
    assert cause.basis == (
        "no setting or preprocessing probe reproduced these texts; these weight/tokenizer/config "
        "files changed since the baseline: model.safetensors (changed)"
    )


def test_library_version_names_only_libraries_the_adapter_uses() -> None:
    moved = {"numpy": ["1.26", "2.1"], "python": ["3.11.9", "3.12.1"]}
    cause = environment_cause([0], env(libraries=moved), [{"versions": ST_VERSIONS}])
    assert cause.cause == "environment"
    moved["transformers"] = ["5.23", "5.24"]
    cause = environment_cause([0], env(libraries=moved), [{"versions": ST_VERSIONS}])
    assert (cause.cause, cause.evidence) == ("library-version", "inferred")
    assert "transformers 5.23 -> 5.24" in cause.detail
    assert "numpy" not in cause.detail and "python" not in cause.detail
