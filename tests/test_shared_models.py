"""Adapters of one process share a loaded model where their loading reads the same things, so
diagnosis rebuilding a side with another setting reuses the weights the run loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.adapters import AdapterSpec
from parity.adapters.shared import holders
from tests.diagnosed_run import diagnosed

LONG = [" ".join(f"word{i}" for i in range(n)) for n in (40, 60, 80)]


def _own_copy(bpe_model: Path, tmp_path: Path) -> Path:
    """The model at a path no other test's adapter (a session fixture's) holds loaded."""
    return Path(shutil.copytree(bpe_model, tmp_path / "bpe"))


def test_a_variant_with_another_setting_shares_the_weights_until_both_close(
    bpe_model: Path, tmp_path: Path
) -> None:
    bpe_model = _own_copy(bpe_model, tmp_path)
    key = ("CustomAdapter", str(bpe_model), "model", "float32", "cpu")
    with AdapterSpec.parse("custom").build(bpe_model) as first:
        with AdapterSpec.parse("custom:max_length=8,pooling=cls").build(bpe_model) as variant:
            assert variant.net is first.net and holders(key) == 2
            shared = variant.embed(LONG)
        assert holders(key) == 1
        with AdapterSpec.parse("custom:dtype=float64").build(bpe_model) as other:
            assert other.net is not first.net  # its loading reads dtype: a model of its own
    assert holders(key) == 0
    with AdapterSpec.parse("custom:max_length=8,pooling=cls").build(bpe_model) as alone:
        np.testing.assert_array_equal(alone.embed(LONG), shared)  # the same vectors, bit for bit


def test_a_failed_load_holds_nothing(bpe_model: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    adapter = AdapterSpec.parse("custom").build(tmp_path)
    with pytest.raises(Exception, match="cannot load a model"):
        adapter.load()
    assert adapter._held == []


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
    assert loads == [str(bpe_model)]  # the run's one load; the probes took it from the pool
