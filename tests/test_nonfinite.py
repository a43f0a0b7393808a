"""NaN/Inf outputs are findings: the run goes on and those texts fail, with the sides named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from parity.adapters import REGISTRY, AdapterSpec, parse_specs
from parity.adapters.base import Adapter, Option
from parity.errors import AdapterError
from parity.report.markdown import render_markdown
from parity.report.summary import build_summary
from parity.runner import run


def _vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).normal(size=8)


class HashAdapter(Adapter):
    """Test double: a fixed vector per text; `overflow` texts become NaN when nan=true."""

    name = "hash-double"
    summary = "test double"
    options: ClassVar[dict[str, Option]] = {"nan": Option(False, "NaN rows", lambda r: r == "true")}

    def _load(self) -> None:
        pass

    def _embed(self, texts: list[str]) -> Any:
        rows = [_vector(t) for t in texts]
        if self.config["nan"]:
            rows = [np.full(8, np.nan) if "overflow" in t else _vector(t) for t in texts]
        return np.stack(rows)

    def _describe(self) -> dict[str, Any]:
        return {"pooling": "mean", "dtype": "float16" if self.config["nan"] else "float32"}


class FlatNanAdapter(HashAdapter):
    """Test double: all garbage, and of the wrong shape."""

    def _embed(self, texts: list[str]) -> Any:
        return np.full(len(texts), np.nan)


def test_a_nan_row_is_returned_but_a_wrong_shape_is_still_an_adapter_error() -> None:
    adapter = HashAdapter("no-model", nan="true")
    out = adapter.embed(["fine", "overflow here"])
    assert out.dtype == np.float32
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    with pytest.raises(AdapterError, match=r"expected output of shape \(2, dim\), got \(2,\)"):
        FlatNanAdapter("no-model").embed(["a", "b"])


def test_run_goes_on_and_fails_only_the_nonfinite_texts(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]
) -> None:
    monkeypatch.setitem(REGISTRY, "hash-double", HashAdapter)
    texts = ["a", "an overflow", "b", "overflow again", "c"]
    specs = parse_specs(["hash-double", "hash-double:nan=true", "hash-double:label=twin"])
    result = run(specs, texts, model=tiny_models["wordpiece"])
    nan_pair, twin_pair = result.comparison.pairs[0], result.comparison.pairs[1]
    assert nan_pair.failing_indices() == [1, 3]
    assert nan_pair.nonfinite == {"hash-double:nan=true": [1, 3]}
    assert nan_pair.decided_by()["non-finite"] == 2
    assert twin_pair.passed and twin_pair.nonfinite == {}
    configs = [{"label": k, "config": v} for k, v in result.configs.items()]
    summary = build_summary(result.comparison, configs, model="m", n_texts=len(texts))
    json.dumps(summary, allow_nan=False)  # strict JSON: NaN became null
    entry = summary["pairs"][0]
    assert entry["nonfinite"] == {"hash-double:nan=true": [1, 3]}
    assert entry["stats"]["euclidean"]["max"] is None
    assert "non-finite values (NaN or Inf) in an embedding from hash-double:nan=true" in (
        render_markdown(summary)
    )


def test_fp16_overflow_on_a_tiny_model_is_a_finding(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A real one: a token embedding beyond fp16's range (65504) becomes inf in float16, and
    every text holding that token comes out NaN; float32 stays finite."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    model = Path(shutil.copytree(tiny_models["wordpiece"], tmp_path / "wide"))
    token = AutoTokenizer.from_pretrained(model).convert_tokens_to_ids("我")
    weights = load_file(model / "model.safetensors")
    weights["embeddings.word_embeddings.weight"][token] *= 1e6
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    texts = ["the piano played", "我们的", "hello world", "a 我"]
    specs = [AdapterSpec.parse("custom"), AdapterSpec.parse("custom:dtype=float16")]
    pair = run(specs, texts, model=model).comparison.pairs[0]
    assert pair.nonfinite == {"custom:dtype=float16": [1, 3]}
    assert [pair.delta(i).failed_metrics for i in (1, 3)] == [["non-finite"], ["non-finite"]]
