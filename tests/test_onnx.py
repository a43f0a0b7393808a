"""The onnx adapter, `parity export-onnx` and the quantization cause, on real exports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parity.adapters import AdapterSpec
from parity.adapters.onnx import OnnxAdapter, last_pool, mean_pool, quantized_operators
from parity.cli import main
from parity.diagnose.causes import INFERRED, MEASURED, Explainer, PairContext, Side
from parity.diagnose.quantization import probe_quantization
from parity.metrics import Tolerance
from parity.texts import builtin_corpus

EDGE_TEXTS = ["  leading", "trailing  ", "two\nlines", "tab\there", "a", "x " * 300]


def export_once(factory: pytest.TempPathFactory, key: str, model: Path, **kwargs: Any) -> Path:
    """Export `model` once per test session (exports cost seconds each on two cores); shared by
    test_fastembed.py through the session's base temp directory."""
    from parity.export import export_onnx

    target = factory.getbasetemp() / "onnx-exports" / key
    if not (target / "model.onnx").is_file():
        export_onnx(model, target, **kwargs)
    return target


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    return export_once(tmp_path_factory, "minilm-fp32", minilm)


@pytest.fixture(scope="session")
def minilm_int8(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    return export_once(tmp_path_factory, "minilm-int8", minilm, quantize="int8")


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


# --- pure pieces: pooling, operator counting --------------------------------------------------


def test_mean_pool_ignores_padding_and_last_pool_finds_the_last_real_token() -> None:
    tokens = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    right = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(mean_pool(tokens, right), [[1.0, 2.0], [11.0, 12.0]])
    np.testing.assert_array_equal(last_pool(tokens, right), [[2.0, 3.0], [14.0, 15.0]])
    np.testing.assert_array_equal(last_pool(tokens, left), [[6.0, 7.0], [14.0, 15.0]])


def test_quantized_operators_are_counted_by_type(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
        helper.make_node("MatMulInteger", ["q", "w", "z", "wz"], ["m1"]),
        helper.make_node("MatMulInteger", ["q", "w", "z", "wz"], ["m2"]),
        helper.make_node("QLinearAdd", ["m1", "s", "z", "m2", "s", "z", "s", "z"], ["y"]),
        helper.make_node("Relu", ["x"], ["r"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    assert quantized_operators(tmp_path / "model.onnx") == {
        "DynamicQuantizeLinear": 1,
        "MatMulInteger": 2,
        "QLinearAdd": 1,
    }


# --- the quantization probe on arrays ---------------------------------------------------------


class _Recorded(OnnxAdapter):
    """Only its type matters to the probe (which reference is of the quantized side's kind)."""

    def _load(self) -> None:  # pragma: no cover - never loaded: the probe reads vectors only
        raise AssertionError("the quantization probe must not load adapters")


def _side(label: str, vectors: np.ndarray, quantized: bool) -> Side:
    ops = {"DynamicQuantizeLinear": 25, "MatMulInteger": 36} if quantized else {}
    config = {"quantized": quantized, "quantized_operators": ops}
    spec = AdapterSpec("onnx", {"model": label}, label)
    return Side(label, spec, _Recorded(label, label=label), vectors, config)


def _probe(others: list[Side]) -> Explainer:
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(4, 8)).astype(np.float32)
    noisy = plain + np.float32(0.05)  # what int8 does: every coordinate moves
    a = Side("st", AdapterSpec("onnx", {}, "st"), _Recorded("st"), plain, {"quantized": None})
    b = _side("int8", noisy, quantized=True)
    ex = Explainer([0, 1, 2, 3])
    ctx = PairContext(a, b, ["t"] * 4, "m", Tolerance(), lambda m: None, False, {})
    probe_quantization(ex, ctx, others)
    return ex


def test_quantization_is_inferred_from_the_operators_without_a_reference() -> None:
    ex = _probe([])
    (cause,) = ex.causes.values()
    assert (cause.cause, cause.evidence, cause.explained) == ("quantization", INFERRED, 4)
    assert "MatMulInteger x36" in cause.basis and "DynamicQuantizeLinear x25" in cause.basis
    assert "max_abs 0.05" in cause.detail
    assert "widen the tolerance to the measured max_abs=0.05" in cause.fix
    assert ex.remaining == []


def test_quantization_is_measured_where_an_fp32_export_reproduces_the_reference() -> None:
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(4, 8)).astype(np.float32)
    fp32 = plain.copy()
    fp32[3] += 1.0  # this text the fp32 export does not reproduce: not quantization's doing
    ex = _probe([_side("fp32", fp32, quantized=False)])
    (cause,) = ex.causes.values()
    assert (cause.cause, cause.evidence, cause.explained) == ("quantization", MEASURED, 3)
    assert "fp32, the same kind of graph without quantization, reproduced st on 3/4" in cause.basis
    assert ex.remaining == [3]


def test_no_quantization_cause_when_neither_side_is_quantized() -> None:
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(2, 4)).astype(np.float32)
    a, b = _side("x", plain, quantized=False), _side("y", plain + 1, quantized=False)
    ex = Explainer([0, 1])
    probe_quantization(ex, PairContext(a, b, ["t"] * 2, "m", Tolerance(), print, False, {}))
    assert ex.causes == {} and ex.remaining == [0, 1]


# --- export-onnx input errors (fail before any export) -----------------------------------------


def test_export_onnx_refuses_a_non_empty_out(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["export-onnx", "--model", str(bpe_model), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(tmp_path)!r} exists and is not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--opset", "12"], "--opset 12 is not supported: the torch.export-based exporter"),
        (["--model", "/no/such/model"], "model path '/no/such/model' does not exist"),
    ],
)
def test_export_onnx_input_errors_exit_2_with_one_line(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    argv = ["export-onnx", "--model", str(bpe_model), "--out", str(tmp_path / "new"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_export_onnx_refuses_modules_it_cannot_carry(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    model = tmp_path / "dense"
    shutil.copytree(bpe_model, model)
    modules = json.loads((model / "modules.json").read_text(encoding="utf-8"))
    modules.append(
        {"idx": 9, "name": "9", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (model / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    assert main(["export-onnx", "--model", str(model), "--out", str(tmp_path / "o")]) == 2
    assert "cannot carry outside the graph: sentence_transformers.models.Dense" in (
        capsys.readouterr().err
    )


def test_onnx_adapter_without_model_onnx_is_exit_2(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"onnx:model={bpe_model}"
    argv = ["run", "--model", str(bpe_model), "--adapter", "custom", "--adapter", spec]
    assert main([*argv, "--texts", str(_texts(tmp_path)), "--quiet", "--no-retrieval"]) == 2
    assert f"no model.onnx in {str(bpe_model)!r}" in capsys.readouterr().err


def test_a_damaged_model_onnx_is_exit_2_naming_the_directory(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(bpe_model, damaged)
    (damaged / "model.onnx").write_bytes(b"not a protobuf graph")
    argv = ["run", "--model", str(bpe_model), "--adapter", "custom", "--adapter"]
    code = main([*argv, f"onnx:model={damaged}", "--texts", str(_texts(tmp_path)), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot load a model from {str(damaged)!r} (InvalidProtobuf" in err


def _corpus_head(tmp_path: Path, n: int = 24) -> Path:
    """The first built-in texts (English, Chinese, edge cases), one JSON string a line: diagnosis
    of an int8 pair probes every text, so fewer texts keep these tests short."""
    path = tmp_path / "texts.jsonl"
    lines = [json.dumps(t) for t in builtin_corpus()[:n]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("hello world\nsecond text\n", encoding="utf-8")
    return path


# --- real exports -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_fp32_export_of_a_tiny_model_matches_sentence_transformers(
    kind: str, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> None:
    exported = export_once(tmp_path_factory, f"tiny-{kind}", tiny_models[kind])
    texts = [*builtin_corpus(), *EDGE_TEXTS]
    onnx = embedder(f"onnx:model={exported}", tiny_models[kind], texts)
    st = embedder("sentence-transformers", tiny_models[kind], texts)
    worst = float(np.abs(onnx - st).max())
    cosine = float(
        (1 - (onnx * st).sum(1) / np.linalg.norm(onnx, axis=1) / np.linalg.norm(st, axis=1)).max()
    )
    print(f"{kind}: max_abs {worst:.3g}, cosine {cosine:.3g}")
    assert worst < 1e-4 and cosine < 1e-6
    # token strings as sentence-transformers' tokenizer gives them, so token diagnostics work
    adapter = AdapterSpec.parse(f"onnx:model={exported}").build(tiny_models[kind])
    st_adapter = AdapterSpec.parse("sentence-transformers").build(tiny_models[kind])
    assert adapter.tokenize(EDGE_TEXTS[:4]) == st_adapter.tokenize(EDGE_TEXTS[:4])


@pytest.mark.slow
def test_fp32_minilm_export_passes_against_sentence_transformers(
    minilm_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--adapter", "sentence-transformers", "--adapter", f"onnx:model={minilm_onnx}"]
    assert main([*argv, "--out", str(tmp_path), "--quiet", "--no-retrieval"]) == 0
    (pair,) = summary_of(tmp_path)["pairs"]
    print(
        f"minilm: max_abs {pair['stats']['max_abs']['max']:.3g}, cosine {pair['stats']['cosine']['max']:.3g}"
    )
    assert pair["stats"]["max_abs"]["max"] < 1e-5
    described = next(a for a in summary_of(tmp_path)["adapters"] if a["name"] == "onnx")["config"]
    assert (described["pooling"], described["normalize"], described["max_length"]) == (
        "mean",
        True,
        256,
    )
    assert described["quantized"] is False and described["dtype"] == "float32"


@pytest.mark.slow
def test_int8_export_fails_and_is_attributed_to_quantization_inferred(
    minilm_int8: Path, tmp_path: Path
) -> None:
    argv = ["run", "--adapter", "sentence-transformers", "--adapter", f"onnx:model={minilm_int8}"]
    argv += ["--texts", str(_corpus_head(tmp_path))]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet", "--no-retrieval"]) == 1
    (pair,) = summary_of(tmp_path / "out")["pairs"]
    causes = pair["causes"]
    assert [c["cause"] for c in causes] == ["quantization"]
    assert causes[0]["explained"] == pair["failures"] > 0
    assert causes[0]["evidence"] == INFERRED
    assert (
        "MatMulInteger x" in causes[0]["basis"] and "DynamicQuantizeLinear x" in causes[0]["basis"]
    )


@pytest.mark.slow
def test_int8_export_is_measured_against_the_fp32_export(
    minilm_onnx: Path, minilm_int8: Path, tmp_path: Path
) -> None:
    argv = [
        "run",
        "--adapter",
        "sentence-transformers",
        "--adapter",
        f"onnx:model={minilm_int8},label=int8",
        "--adapter",
        f"onnx:model={minilm_onnx},label=fp32",
        "--texts",
        str(_corpus_head(tmp_path)),
    ]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet", "--no-retrieval"]) == 1
    pairs = {(p["a"], p["b"]): p for p in summary_of(tmp_path / "out")["pairs"]}
    assert pairs[("sentence-transformers", "fp32")]["passed"]
    pair = pairs[("sentence-transformers", "int8")]
    (cause,) = pair["causes"]
    assert (cause["cause"], cause["evidence"]) == ("quantization", MEASURED)
    assert cause["explained"] == pair["failures"]
    assert (
        f"reproduced sentence-transformers on {pair['failures']}/{pair['failures']} texts"
        in (cause["basis"])
    )


@pytest.mark.slow
def test_cls_pooling_on_the_onnx_side_is_found_by_rebuilding_it(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    exported = export_once(tmp_path_factory, "tiny-bpe", tiny_models["bpe"])
    argv = ["run", "--model", str(tiny_models["bpe"]), "--adapter", "sentence-transformers"]
    argv += ["--adapter", f"onnx:model={exported},pooling=cls", "--out", str(tmp_path)]
    assert main([*argv, "--quiet", "--no-retrieval"]) == 1
    (pair,) = summary_of(tmp_path)["pairs"]
    (cause,) = pair["causes"]
    assert (cause["cause"], cause["evidence"], cause["explained"]) == (
        "pooling",
        MEASURED,
        pair["failures"],
    )
    assert cause["fix"].startswith(f"set pooling=mean on onnx:model={exported},pooling=cls")


@pytest.mark.parametrize("name", ["onnx", "fastembed"])
def test_device_is_refused_where_onnxruntime_runs_the_graph(name: str, tmp_path: Path) -> None:
    from parity.errors import AdapterError

    (tmp_path / "model.onnx").write_bytes(b"")
    adapter = AdapterSpec.parse(f"{name}:model={tmp_path},device=cuda").build(tmp_path)
    with pytest.raises(AdapterError, match="device= is torch's"):
        adapter.load()


@pytest.mark.slow
def test_export_onnx_cli_writes_a_model_directory_with_dynamic_axes(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    out = tmp_path / "int8"
    argv = ["export-onnx", "--model", str(tiny_models["unigram"]), "--out", str(out)]
    assert main([*argv, "--quantize", "int8"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "[parity] quantizing to int8" in captured.err
    for name in ("model.onnx", "tokenizer.json", "config.json", "modules.json"):
        assert (out / name).is_file(), name
    assert (out / "1_Pooling" / "config.json").is_file()
    assert (out / "sentence_bert_config.json").is_file()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for graph_input in session.get_inputs():
        assert all(isinstance(dim, str) for dim in graph_input.shape), graph_input.shape
    with AdapterSpec.parse(f"onnx:model={out}").build(out) as adapter:
        described = adapter.describe()
        assert adapter.embed(["one", "two texts", "three texts here"]).shape == (3, 64)
    assert described["pooling"] == "cls" and described["quantized"] is True
    assert described["quantized_operators"]["MatMulInteger"] > 0


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_export_onnx_without_the_onnx_extra_is_exit_2_with_the_install_step(
    missing: str,
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a None entry in sys.modules makes `import onnx` raise ImportError, as on an install
    # without the extra; before, that ImportError was exit 3 with a traceback
    monkeypatch.setitem(sys.modules, missing, None)
    assert main(["export-onnx", "--model", str(bpe_model), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        f"export-onnx needs the {missing} package, which is not installed; install with "
        "`pip install 'parity[onnx]'`"
    )
    assert len(err.splitlines()) == 1 and not (tmp_path / "new").exists()
