"""`parity gate`: drift against a baseline, its causes, retrieval impact, and updating on purpose.

Fast cases run on the tiny BPE model; the acceptance cases on the bundled MiniLM are `slow`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main
from parity.texts import builtin_corpus

EDGE_TEXTS = ["  hello world", "hello world  ", "\tfoo bar\n", "plain text", " x ", "tail\n"]


def _write_texts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    return path


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def create(model: Path, out: Path, texts: Path, *adapters: str) -> int:
    argv = ["baseline", "create", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    for spec in adapters:
        argv += ["--adapter", spec]
    return main([*argv, "--quiet"])


def gate(baseline: Path, out: Path, *args: str) -> tuple[int, dict]:
    code = main(["gate", "--baseline", str(baseline), "--out", str(out), "--quiet", *args])
    return code, json.loads((out / "summary.json").read_text())


@pytest.fixture
def strip_baseline(bpe_model: Path, tmp_path: Path) -> Path:
    """custom:strip=true recorded on edge-whitespace texts: sentence-transformers <= 5.3."""
    texts = _write_texts(tmp_path / "edge.jsonl", EDGE_TEXTS)
    assert create(bpe_model, tmp_path / "base", texts, "custom:strip=true") == 0
    return tmp_path / "base"


def test_the_strip_upgrade_is_caught_with_cause_strip(
    strip_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(strip_baseline)
    code, summary = gate(strip_baseline, tmp_path / "out", "--adapter", "custom")
    assert code == 1
    line = capsys.readouterr().out
    assert line.startswith("parity gate: FAIL: custom drifted (5/6 texts; strip)")
    assert summary["passed"] is False
    assert summary["baseline"]["drifted"] == ["custom"]
    assert summary["baseline"]["adapters"]["custom"]["baseline_adapter"] == "custom:strip=true"
    (pair,) = summary["pairs"]
    assert (pair["a"], pair["b"], pair["kind"]) == (
        "baseline:custom:strip=true",
        "custom",
        "baseline",
    )
    assert [c["cause"] for c in pair["causes"]] == ["strip"]
    assert pair["causes"][0]["explained"] == 5
    assert "strips edge whitespace" in pair["causes"][0]["detail"]
    assert "parity gate --update" in pair["causes"][0]["fix"]
    assert pair["diagnosis"]["first_stage"] == "input_ids"
    assert pair["diagnosis"]["baseline_reproduced"] == 5
    # the retrieval set has no edge whitespace: ranking is untouched
    assert pair["retrieval"]["ndcg@10"]["diff"] == pytest.approx(0.0, abs=1e-12)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**FAIL: drifted: custom**" in report
    assert "| custom | custom:strip=true | **DRIFTED** | 5/6 |" in report
    assert "## Retrieval impact" in report
    assert _snapshot(strip_baseline) == before
    assert not strip_baseline.with_name("base.prev").exists()


def test_the_same_settings_pass_below_1e6(
    strip_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary = gate(strip_baseline, tmp_path / "out")
    assert code == 0
    assert capsys.readouterr().out.startswith(
        f"parity gate: PASS: 1 adapter(s) match {strip_baseline} on 6 texts"
    )
    assert summary["baseline"]["adapters"]["custom:strip=true"]["max_abs"] < 1e-6
    assert summary["baseline"]["environment_diff"] == []
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**PASS: no adapter drifted from the baseline (1 checked)" in report


def test_update_records_the_new_vectors_and_keeps_the_previous(
    strip_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(strip_baseline)
    code, summary = gate(strip_baseline, tmp_path / "out", "--adapter", "custom", "--update")
    assert code == 0
    assert f"baseline updated, previous kept in {strip_baseline}.prev" in capsys.readouterr().out
    assert summary["baseline"]["updated"] == str(strip_baseline)
    assert _snapshot(strip_baseline.with_name("base.prev")) == before
    manifest = json.loads((strip_baseline / "manifest.json").read_text())
    assert [a["spec"] for a in manifest["adapters"]] == ["custom"]
    code, summary = gate(strip_baseline, tmp_path / "again")
    assert code == 0
    assert summary["baseline"]["adapters"]["custom"]["max_abs"] == 0.0


def test_a_tighter_retrieval_tolerance_fails_on_ranking(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _write_texts(tmp_path / "t.jsonl", ["plain text"])
    # recorded in bfloat16, gated in float32: on this model float32 ranks worse (a drop)
    assert create(bpe_model, tmp_path / "base", texts, "custom:dtype=bfloat16,label=custom") == 0
    # a zero nDCG tolerance turns any ranking drop into a failure
    code, summary = gate(
        tmp_path / "base",
        tmp_path / "out",
        "--adapter",
        "custom",
        "--max-ndcg-drop",
        "0",
        "--tol",
        "1",
        "--no-diagnose",
    )
    pair = summary["pairs"][0]
    moved = pair["retrieval"]["ndcg@10"]["diff"]
    assert pair["passed"] is True  # every vector is within the (wide) tolerance
    assert moved != 0.0
    assert code == 1
    assert summary["baseline"]["ndcg_failures"] == ["custom"]
    assert moved < 0  # a drop: only drops fail
    assert f"custom: nDCG@10 dropped {-moved:.3g} (more than 0)" in capsys.readouterr().out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**FAIL: nDCG@10 dropped: custom**" in report
    assert "- **custom**: nDCG@10 dropped more than 0 from the baseline" in report


# --- the bundled model: acceptance ---


@pytest.fixture(scope="module")
def minilm_baseline(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("minilm-baseline")
    texts = _write_texts(root / "texts.jsonl", builtin_corpus()[:30])
    assert create(minilm, root / "base", texts, "sentence-transformers", "custom") == 0
    return root / "base"


@pytest.mark.slow
def test_unchanged_environment_passes_below_1e6(minilm_baseline: Path, tmp_path: Path) -> None:
    code, summary = gate(minilm_baseline, tmp_path / "out")
    assert code == 0
    adapters = summary["baseline"]["adapters"]
    assert set(adapters) == {"sentence-transformers", "custom"}
    for label, entry in adapters.items():
        assert entry["max_abs"] < 1e-6, label
        assert not entry["drifted"]


def _perturbed_copy(model: Path, out: Path) -> Path:
    from safetensors.numpy import load_file, save_file

    shutil.copytree(model, out)
    tensors = load_file(out / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=tensors[key].shape)
    tensors[key] = (tensors[key] + 1e-3 * signs).astype(tensors[key].dtype)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.mark.slow
def test_a_perturbed_weight_is_drift_with_the_model_hash_named(
    minilm_baseline: Path, minilm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(minilm_baseline)
    copy = _perturbed_copy(minilm, tmp_path / "perturbed")
    code, summary = gate(minilm_baseline, tmp_path / "out", "--model", str(copy))
    assert code == 1
    line = capsys.readouterr().out
    assert "sentence-transformers drifted" in line and "custom drifted" in line
    assert "model file hash changed: model.safetensors" in line
    assert summary["baseline"]["drifted"] == ["sentence-transformers", "custom"]
    assert summary["baseline"]["model_files"]["changed"] == ["model.safetensors"]
    for pair in summary["pairs"][:2]:
        assert pair["causes"][0]["cause"] == "model-files"
        assert pair["causes"][0]["explained"] == pair["failures"]
    cross = summary["pairs"][2]
    assert cross["kind"] == "cross" and cross["passed"]  # both moved alike
    assert (
        "model file hash changed: model.safetensors" in (tmp_path / "out" / "report.md").read_text()
    )
    assert _snapshot(minilm_baseline) == before


COMMITTED = Path(__file__).parent.parent / "fixtures" / "baselines" / "minilm"


@pytest.mark.slow
def test_the_committed_baseline_passes_here(tmp_path: Path) -> None:
    """`make gate`: the committed baseline still describes this environment."""
    code, summary = gate(COMMITTED, tmp_path / "out")
    adapters = summary["baseline"]["adapters"]
    assert code == 0, {k: v["max_abs"] for k, v in adapters.items()}
    assert len(adapters) == 4
    # retrieval impact of the report's pairs: BCEmbedding with mean pooling reads past token 256
    cross = {(p["a"], p["b"]): p for p in summary["pairs"] if p["kind"] == "cross"}
    long_docs = cross[("sentence-transformers", "bcembedding:pooling=mean")]["retrieval"][
        "ndcg@10_long_docs"
    ]
    assert long_docs["diff"] != 0.0
