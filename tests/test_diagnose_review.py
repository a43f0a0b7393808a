"""Review findings on diagnosis: a crashing probe never loses the run's finding, fixes move every
departing side to the model's value, a measured gate cause carries no guessed environment, a
non-finite stage is claimed only when reproduced, the gate's verdict line marks inferences.

Everything runs on the tiny models (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest

from parity.adapters import REGISTRY, AdapterSpec, register
from parity.adapters.custom import CustomAdapter
from parity.cli import main
from parity.compare import compare_pair
from parity.diagnose import Cause, Diagnosis, Side, diagnose_pair
from parity.diagnose.settings import SideSettings, setting_fix
from parity.gate.explain import _gate_causes
from parity.gate.run import verdict_line
from parity.metrics import Tolerance

PLAIN = ["the cat sat on the mat", "hello world", "search index query", "tea and coffee"]
LONG = ["word " * 150 + "tail", "the river " * 90]  # past the tiny models' 128 tokens


class CrashOnRebuild(CustomAdapter):
    """custom, except that an instance built with max_length=128 crashes in its backend."""

    name = "crash-on-rebuild-test"

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.config.get("max_length") == 128:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return super()._embed(texts)


@pytest.fixture
def crashing() -> Any:
    register(CrashOnRebuild)
    yield CrashOnRebuild
    REGISTRY.pop(CrashOnRebuild.name, None)


def sides_of(model: Path, specs: list[str], texts: list[str]) -> tuple[list[Side], Any]:
    sides = []
    for text in specs:
        spec = AdapterSpec.parse(text)
        adapter = spec.build(model)
        adapter.load()
        sides.append(Side(spec.label, spec, adapter, adapter.embed(texts), adapter.describe()))
    pair = compare_pair(sides[0].label, sides[0].vectors, sides[1].label, sides[1].vectors, texts)
    return sides, pair


# --- finding 1: a probe that crashes is skipped, with why; the finding stands ----------------


def test_a_rebuilt_adapter_that_crashes_is_a_skipped_probe(bpe_model: Path, crashing: Any) -> None:
    texts = LONG + PLAIN
    sides, pair = sides_of(bpe_model, [f"{crashing.name}:max_length=64", "custom"], texts)
    try:
        found = diagnose_pair(*sides, texts, pair, str(bpe_model), Tolerance(), lambda m: None)
    finally:
        for side in sides:
            side.adapter.close()
    skipped = {p["probe"]: p["skipped"] for p in found.probes if "skipped" in p}
    assert skipped[f"{crashing.name}:max_length=64: max_length=128"] == (
        f"AdapterCrash: adapter {crashing.name}:max_length=64 crashed while embedding: "
        "RuntimeError: CUDA error: device-side assert triggered"
    )
    # the other side's rebuild still ran and measured the cause
    assert [(c.name, c.explained, c.evidence) for c in found.causes] == [
        ("truncation", 2, "measured")
    ]
    assert found.causes[0].basis == (
        f"custom rebuilt with max_length=64 reproduced {crashing.name}:max_length=64 on 2/2 texts"
    )


def test_a_crashing_noise_floor_leaves_the_texts_unknown(
    bpe_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parity.diagnose.pair

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("batch")

    monkeypatch.setattr(parity.diagnose.pair, "noise_floor", crash)
    sides, _ = sides_of(bpe_model, ["custom:label=one", "custom:label=two"], PLAIN)
    sides[1].vectors[0] += 1e-6  # a failing text no setting or transform explains
    tight = Tolerance(max_abs=1e-12, cosine=1e-12, euclidean=1e-12)
    pair = compare_pair("one", sides[0].vectors, "two", sides[1].vectors, PLAIN, tight)
    try:
        found = diagnose_pair(*sides, PLAIN, pair, str(bpe_model), tight, lambda m: None)
    finally:
        for side in sides:
            side.adapter.close()
    crashed = {"probe": "noise floor", "skipped": "KeyError: 'batch'", "crashed": True}
    assert crashed in found.probes
    assert found.noise_floor == {}
    assert [(c.cause, c.explained) for c in found.causes] == [("unknown", 1)]


def test_a_run_whose_diagnosis_probe_crashes_still_reports_its_finding(
    bpe_model: Path, crashing: Any, tmp_path: Path
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in LONG + PLAIN), "utf-8")
    out = tmp_path / "out"
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--quiet", "--no-retrieval"]
    code = main(
        [
            *argv,
            "--out",
            str(out),
            "--adapter",
            f"{crashing.name}:max_length=64",
            "--adapter",
            "custom",
        ]
    )
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    (pair,) = summary["pairs"]
    assert [(c["cause"], c["explained"]) for c in pair["causes"]] == [("truncation", 2)]
    assert any("CUDA error" in p.get("skipped", "") for p in pair["diagnosis"]["probes"])


class CrashWhenArmed(CustomAdapter):
    """custom, except that once armed, an instance with the default max_length crashes."""

    name = "crash-when-armed-test"
    armed: ClassVar[bool] = False

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.armed and "max_length" not in self.given:
            raise RuntimeError("CUDA out of memory")
        return super()._embed(texts)


def test_a_gate_whose_baseline_rebuild_crashes_still_reports_the_drift(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(CrashWhenArmed)
    try:
        texts = tmp_path / "t.jsonl"
        texts.write_text("".join(json.dumps(t) + "\n" for t in LONG + PLAIN), encoding="utf-8")
        create = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
        base = ["--out", str(tmp_path / "b"), "--adapter", CrashWhenArmed.name, "--quiet"]
        assert main([*create, *base]) == 0
        monkeypatch.setattr(CrashWhenArmed, "armed", True)  # the recorded spec now crashes
        gate = ["gate", "--baseline", str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--quiet"]
        assert main([*gate, "--adapter", f"{CrashWhenArmed.name}:max_length=64"]) == 1
    finally:
        REGISTRY.pop(CrashWhenArmed.name, None)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    pair = next(p for p in summary["pairs"] if p["failures"])
    assert [(c["cause"], c["explained"]) for c in pair["causes"]] == [("truncation", 2)]
    assert pair["diagnosis"]["baseline_rebuild_skipped"] == (
        f"AdapterCrash: adapter baseline:{CrashWhenArmed.name} crashed while embedding: "
        "RuntimeError: CUDA out of memory"
    )


# --- finding 2: when both sides depart, both move to the model's value ------------------------


def settings(label: str, max_length: int) -> SideSettings:
    return SideSettings(label, {"max_length": max_length}, CustomAdapter.all_options())


def test_both_departing_sides_are_moved_to_the_models_value() -> None:
    fix = setting_fix(
        "max_length",
        settings("custom:max_length=128", 128),
        settings("bcembedding:pooling=mean", 512),
        {"max_length": 256},
    )
    assert fix == (
        "set max_length=256 on custom:max_length=128 and bcembedding:pooling=mean (the model is "
        "configured for 256 tokens)"
    )


def test_a_run_where_both_sides_depart_names_both(bpe_model: Path) -> None:
    texts = LONG + PLAIN
    sides, pair = sides_of(bpe_model, ["custom:max_length=64", "bcembedding:pooling=mean"], texts)
    try:
        found = diagnose_pair(*sides, texts, pair, str(bpe_model), Tolerance(), lambda m: None)
    finally:
        for side in sides:
            side.adapter.close()
    assert sides[1].config["max_length"] != 128  # the premise: bcembedding departs too
    (cause,) = found.causes
    assert (cause.cause, cause.explained) == ("truncation", 2)
    assert cause.fix == (
        "set max_length=128 on custom:max_length=64 and bcembedding:pooling=mean (the model is "
        "configured for 128 tokens)"
    )


# --- finding 3: a measured gate cause carries no unfiltered environment guess -----------------


def test_a_measured_gate_cause_states_the_environment_as_a_filtered_inference() -> None:
    measured = Cause(
        "strip",
        "input_ids",
        "custom strips edge whitespace.",
        2,
        "set strip=false",
        basis="custom given strip(text) reproduced baseline:custom on 2/2 texts",
    )
    found = Diagnosis([measured], [], [], {}, "input_ids")
    env = {
        "lines": ["numpy 1.26 -> 2.0", "python 3.11 -> 3.12", "README.md changed"],
        "model_files": {"changed": ["README.md", "model.safetensors"], "added": [], "removed": []},
        "libraries": {"numpy": ("1.26", "2.0"), "tokenizers": ("0.19", "0.20")},
    }
    configs = [{"versions": {"tokenizers": "0.19", "python": "3.11"}}]
    (cause,) = _gate_causes(found, env, configs, frozen=True)
    assert cause.detail == "custom strips edge whitespace."  # the measurement, unchanged
    assert cause.evidence == "measured"
    assert cause.basis == (
        "custom given strip(text) reproduced baseline:custom on 2/2 texts; inferred: the recorded "
        "settings, rebuilt today, no longer reproduce the baseline, so something outside the "
        "settings moved too (of what changed, these can move the vectors: model.safetensors "
        "(changed), tokenizers 0.19 -> 0.20)"
    )
    assert "numpy" not in cause.basis and "README" not in cause.basis


# --- finding 8: the non-finite fix says float32 is not fp16 overflow --------------------------


def test_non_finite_on_a_float32_side_never_blames_fp16(bpe_model: Path) -> None:
    sides, _ = sides_of(bpe_model, ["custom", "custom:strip=false"], PLAIN)
    sides[1].vectors[2] = np.nan
    pair = compare_pair("custom", sides[0].vectors, sides[1].label, sides[1].vectors, PLAIN)
    try:
        found = diagnose_pair(*sides, PLAIN, pair, str(bpe_model), Tolerance(), lambda m: None)
    finally:
        for side in sides:
            side.adapter.close()
    (cause,) = found.causes
    assert (cause.cause, cause.stage, cause.explained) == ("non-finite", None, 1)
    assert cause.fix == (
        "custom:strip=false runs float32, so this is not fp16 overflow: check its weights and "
        "its inputs for these texts"
    )
    assert not cause.fix.startswith("fp16 overflow")


# --- finding 9: the verdict line marks inferred causes ----------------------------------------


def test_the_gate_verdict_line_marks_inferred_causes() -> None:
    vectors = np.eye(3, 4, dtype=np.float32)
    pair = compare_pair("baseline:custom", vectors, "custom", vectors[::-1].copy(), ["a", "b", "c"])
    pair.causes = [
        {"cause": "truncation", "also": [], "evidence": "measured"},
        {"cause": "model-files", "also": [], "evidence": "inferred"},
    ]
    gate = SimpleNamespace(
        passed=False,
        baseline=SimpleNamespace(texts=["a", "b", "c"], path="b"),
        drift_pairs=[pair],
        ndcg_failures=[],
        ndcg_gains={},
        newly_failing=[],
        overridden={},
        env={"lines": []},
        updated=False,
    )
    line = verdict_line(gate, None)  # type: ignore[arg-type]
    assert line == (
        "parity gate: FAIL: custom drifted (2/3 texts; truncation, inferred: model-files)"
    )
