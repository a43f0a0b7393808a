"""Diagnosis rebuilding a side with a setting its loading does not read reuses the weights the
run loaded (parity.adapters.shared); two sides of one run, or changed files, load their own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.adapters import AdapterSpec, parse_specs, shared
from parity.adapters.base import Adapter
from parity.adapters.shared import holders
from parity.diagnose import diagnose_run
from parity.errors import AdapterError
from parity.runner import run
from tests.diagnosed_run import diagnosed, rebuilt_embeds

LONG = [" ".join(f"word{i}" for i in range(n)) for n in (40, 60, 80)]


def _own_copy(bpe_model: Path, tmp_path: Path) -> Path:
    """The model at a path no other test's adapter (a session fixture's) holds loaded."""
    return Path(shutil.copytree(bpe_model, tmp_path / "bpe"))


def _build(spec: str, model: Path, *, reuse: bool = True) -> Adapter:
    adapter = AdapterSpec.parse(spec).build(model)
    adapter.reuse_loaded = reuse  # as diagnosis's rebuild() sets it
    return adapter


def test_a_rebuilt_variant_shares_the_weights_until_both_close(
    bpe_model: Path, tmp_path: Path
) -> None:
    bpe_model = _own_copy(bpe_model, tmp_path)
    with _build("custom", bpe_model, reuse=False) as first:
        key = next(k for k, loaded in first._held if loaded is first.net)
        with _build("custom:max_length=8,pooling=cls", bpe_model) as variant:
            assert variant.net is first.net and holders(key) == 2
            shared = variant.embed(LONG)
        assert holders(key) == 1
        with _build("custom:dtype=float64", bpe_model) as other:
            assert other.net is not first.net  # its loading reads dtype: a model of its own
        with _build("custom:label=twin", bpe_model, reuse=False) as twin:
            assert twin.net is not first.net  # a second side of a run loads its own
        os.utime(bpe_model / "config.json", ns=(1, 1))  # the files changed on disk
        with _build("custom:max_length=8", bpe_model) as later:
            assert later.net is not first.net
    assert holders(key) == 0
    with _build("custom:max_length=8,pooling=cls", bpe_model) as alone:
        np.testing.assert_array_equal(alone.embed(LONG), shared)  # the same vectors, bit for bit


def test_a_load_that_fails_after_the_tokenizer_holds_nothing(
    bpe_model: Path, tmp_path: Path
) -> None:
    bpe_model = _own_copy(bpe_model, tmp_path)
    (bpe_model / "model.safetensors").write_bytes(b"not weights")
    adapter = AdapterSpec.parse("custom").build(bpe_model)
    with pytest.raises(AdapterError, match="cannot load a model"):
        adapter.load()
    assert adapter._held == []
    assert not [key for key in shared._ENTRIES if str(bpe_model) in map(str, key)]


def test_diagnosis_rebuilds_a_side_without_reading_its_weights_again(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel

    bpe_model = _own_copy(bpe_model, tmp_path)
    loads: list[str] = []
    original = AutoModel.from_pretrained

    def counting(*args: object, **kwargs: object) -> object:
        loads.append(str(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", counting)
    pair = diagnosed(bpe_model, ["custom", "custom:max_length=16"], LONG)
    assert pair.failures == 3 and pair.causes[0]["cause"] == "truncation"
    assert pair.causes[0]["evidence"] == "measured"  # a probe rebuilt a side and reproduced
    assert loads == [str(bpe_model)] * 2  # each side's own load; the probes read no weights


def test_pairs_that_share_a_probe_embed_it_once(
    bpe_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = rebuilt_embeds(monkeypatch)
    one = diagnosed(bpe_model, ["custom", "custom:max_length=16"], LONG)
    alone = list(calls)
    calls.clear()
    specs = ["custom", "custom:label=twin", "custom:max_length=16"]
    result = run(parse_specs(specs), LONG, model=bpe_model, keep_adapters=True)
    try:
        diagnose_run(result)
    finally:
        for adapter in result.adapters.values():
            adapter.close()
    failing = [p for p in result.comparison.pairs if not p.passed]
    assert len(failing) == 2 and alone and calls == alone  # the second pair's: from the first
    assert [c["cause"] for c in failing[1].causes] == [c["cause"] for c in one.causes]
