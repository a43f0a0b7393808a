"""The fastembed adapter: the real fastembed.TextEmbedding on a local export, never the network."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from test_onnx import export_once  # the MiniLM export is shared by the whole session

from parity.adapters import AdapterSpec
from parity.cli import main
from parity.diagnose.causes import MEASURED


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    return export_once(tmp_path_factory, "minilm-fp32", minilm)


def test_fastembed_without_model_onnx_is_exit_2(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello world\n", encoding="utf-8")
    argv = ["run", "--model", str(bpe_model), "--adapter", "custom"]
    argv += ["--adapter", f"fastembed:model={bpe_model}", "--texts", str(texts)]
    assert main([*argv, "--quiet", "--no-retrieval"]) == 2
    assert f"no model.onnx in {str(bpe_model)!r}" in capsys.readouterr().err


@pytest.mark.slow
def test_fastembed_loads_the_local_directory_without_the_network(
    minilm_onnx: Path, minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"fastembed tried the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # offline by construction, not by env
    before = sorted(p.name for p in minilm_onnx.iterdir())
    adapter = AdapterSpec.parse(f"fastembed:model={minilm_onnx}").build(minilm)
    with adapter:
        vectors = adapter.embed(["hello world", "a second text"])
        described = adapter.describe()
        cache = Path(adapter.cache_dir)
    assert vectors.shape == (2, 384)
    assert (described["pooling"], described["normalize"], described["quantized"]) == (
        "mean",
        True,
        False,
    )
    # fastembed's own truncation: tokenizer_config.json's model_max_length, not max_seq_length
    assert described["max_length"] == 512
    assert not cache.exists()  # the temp cache_dir goes with the adapter
    assert sorted(p.name for p in minilm_onnx.iterdir()) == before


@pytest.mark.slow
def test_fastembed_matches_sentence_transformers_on_minilm_at_its_max_length(
    minilm_onnx: Path, tmp_path: Path
) -> None:
    spec = f"fastembed:model={minilm_onnx},max_length=256"
    argv = ["run", "--adapter", "sentence-transformers", "--adapter", spec]
    assert main([*argv, "--out", str(tmp_path), "--quiet", "--no-retrieval"]) == 0
    (pair,) = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["pairs"]
    worst, cosine = pair["stats"]["max_abs"]["max"], pair["stats"]["cosine"]["max"]
    print(f"fastembed vs sentence-transformers on MiniLM: max_abs {worst:.3g}, cosine {cosine:.3g}")
    assert worst < 1e-5


@pytest.mark.slow
def test_fastembed_truncating_at_512_is_found_as_truncation(
    minilm_onnx: Path, tmp_path: Path
) -> None:
    """fastembed truncates where tokenizer_config.json says (512 for MiniLM), sentence-transformers
    at max_seq_length (256): the 20 built-in texts over 256 tokens differ, and rebuilding the
    fastembed side at 256 reproduces sentence-transformers."""
    label = f"fastembed:model={minilm_onnx}"
    argv = ["run", "--adapter", "sentence-transformers", "--adapter", label]
    assert main([*argv, "--out", str(tmp_path), "--quiet", "--no-retrieval"]) == 1
    (pair,) = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["pairs"]
    (cause,) = pair["causes"]
    assert (cause["cause"], cause["evidence"]) == ("truncation", MEASURED)
    assert cause["explained"] == pair["failures"] == 20
    assert cause["fix"].startswith(f"set max_length=256 on {label}")


def test_a_model_fastembed_cannot_load_leaves_no_cache_directory_behind(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import tempfile

    from parity.errors import AdapterError

    model = tmp_path / "model"
    shutil.copytree(bpe_model, model)
    (model / "model.onnx").write_bytes(b"not an onnx graph")  # onnxruntime refuses it
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp creates it
    adapter = AdapterSpec.parse(f"fastembed:model={model}").build("")
    with pytest.raises(AdapterError) as error:
        adapter.load()
    assert str(error.value).endswith(
        f"{model / 'model.onnx'} is not a valid ONNX graph; export it again with "
        "`parity export-onnx`"
    )  # before: onnxruntime's InvalidProtobuf was a crash (exit 3)
    assert list(scratch.iterdir()) == []  # before: parity-fastembed-* stayed behind
