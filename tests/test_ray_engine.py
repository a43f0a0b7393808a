"""`parity run --engine ray`: a local 2-CPU Ray cluster gives the local engine's verdict, figures,
per-text rows and causes on the built-in corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import parity
from parity.cli import main

pytestmark = pytest.mark.slow

SPECS = ["custom", "custom:strip=true", "langchain"]


def _run(model: Path, out: Path, *extra: str) -> tuple[int, dict]:
    argv = ["run", "--model", str(model), "--no-retrieval", "--out", str(out), *extra]
    for spec in SPECS:
        argv += ["--adapter", spec]
    code = main(argv)
    return code, json.loads((out / "summary.json").read_text())


def test_ray_engine_agrees_with_the_local_engine(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_code, local = _run(bpe_model, tmp_path / "local")
    capsys.readouterr()
    ray_code, ray = _run(bpe_model, tmp_path / "ray", "--engine", "ray")
    err = capsys.readouterr().err
    assert ray_code == local_code == 1
    assert "on 2 Ray workers" in err  # two actors per adapter, each loading the model once
    assert ray["passed"] is local["passed"] is False
    for mine, theirs in zip(ray["pairs"], local["pairs"], strict=True):
        assert (mine["a"], mine["b"], mine["failures"]) == (
            theirs["a"],
            theirs["b"],
            theirs["failures"],
        )
        for metric, stats in theirs["stats"].items():
            assert mine["stats"][metric]["max"] == pytest.approx(stats["max"], abs=1e-6)
        assert [(c["cause"], c["evidence"]) for c in mine["causes"]] == [
            (c["cause"], c["evidence"]) for c in theirs["causes"]
        ]
    assert [a["config"] for a in ray["adapters"]] == [a["config"] for a in local["adapters"]]
    rows, expected = parity.load_results(tmp_path / "ray"), parity.load_results(tmp_path / "local")
    pd.testing.assert_series_equal(rows["passed"], expected["passed"])
    pd.testing.assert_series_equal(rows["tokens_a"], expected["tokens_a"])
    assert (rows["euclidean"] - expected["euclidean"]).abs().max() < 1e-6


def test_a_worker_that_cannot_load_its_model_is_one_exit_2_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bpe_model: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--engine", "ray"]
    code = main([*argv, "--adapter", "custom", "--adapter", f"custom:model={broken}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"cannot load a model from {str(broken)!r}" in err and "Traceback" not in err
