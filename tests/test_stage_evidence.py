""" "First stage that differs" is claimed only where the stage walk measured it, and a gate whose
recorded spec is invalid today keeps its drift finding.

Everything runs on the tiny BPE model (seconds).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from parity.adapters import parse_specs
from parity.cli import main
from parity.diagnose import diagnose_run
from parity.metrics import Tolerance
from parity.runner import run

EDGE_TEXTS = ["  hello world", "hello world  ", "\tfoo bar\n", "plain text", " x ", "tail\n"]


def _texts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    return path


def _create(model: Path, out: Path, texts: Path, spec: str) -> None:
    argv = ["baseline", "create", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    assert main([*argv, "--adapter", spec, "--quiet"]) == 0


def _gate(baseline: Path, out: Path, *args: str) -> tuple[int, dict, str]:
    code = main(["gate", "--baseline", str(baseline), "--out", str(out), "--quiet", *args])
    summary = json.loads((out / "summary.json").read_text())
    return code, summary, (out / "report.md").read_text()


def _perturbed_copy(model: Path, out: Path) -> Path:
    """The model with its word embeddings nudged by 2e-2 (tests/test_gate.py nudges MiniLM by 1e-3)."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(model, out)
    tensors = load_file(out / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=tensors[key].shape)
    tensors[key] = (tensors[key] + 2e-2 * signs).astype(tensors[key].dtype)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_a_run_pair_whose_walk_finds_the_stage_says_measured(bpe_model: Path) -> None:
    specs = parse_specs(["custom:strip=true", "custom"])
    result = run(specs, EDGE_TEXTS, model=bpe_model, tolerance=Tolerance(), keep_adapters=True)
    try:
        diagnose_run(result)
    finally:
        for adapter in result.adapters.values():
            adapter.close()
    diagnosis = result.comparison.pairs[0].diagnosis
    assert (diagnosis["first_stage"], diagnosis["first_stage_evidence"]) == (
        "input_ids",
        "measured",
    )


def test_a_gate_with_other_settings_walks_the_rebuilt_spec_and_says_measured(
    bpe_model: Path, tmp_path: Path
) -> None:
    _create(
        bpe_model, tmp_path / "b", _texts(tmp_path / "t.jsonl", EDGE_TEXTS), "custom:strip=true"
    )
    code, summary, report = _gate(tmp_path / "b", tmp_path / "o", "--adapter", "custom")
    assert code == 1
    diagnosis = summary["pairs"][0]["diagnosis"]
    assert (diagnosis["first_stage"], diagnosis["first_stage_evidence"]) == (
        "input_ids",
        "measured",
    )
    assert "First stage that differs: `input_ids`." in report


def test_perturbed_weights_in_the_gate_give_an_inferred_stage_never_a_measured_one(
    bpe_model: Path, tmp_path: Path
) -> None:
    texts = _texts(tmp_path / "t.jsonl", ["plain text", "hello world", "tea and coffee"])
    _create(bpe_model, tmp_path / "b", texts, "custom")
    copy = _perturbed_copy(bpe_model, tmp_path / "perturbed")
    code, summary, report = _gate(tmp_path / "b", tmp_path / "o", "--model", str(copy))
    assert code == 1
    pair = summary["pairs"][0]
    assert pair["failures"] == 3
    assert [(c["cause"], c["evidence"]) for c in pair["causes"]] == [("model-files", "inferred")]
    diagnosis = pair["diagnosis"]
    assert (diagnosis["first_stage"], diagnosis["first_stage_evidence"]) == (
        "token_embeddings",
        "inferred",
    )
    skipped = [p for part in diagnosis["parts"] for p in part["probes"] if "skipped" in p]
    assert {
        "probe": "first differing stage",
        "skipped": "both sides are the same adapter (custom)",
    } in (skipped)
    assert "First stage that differs" not in report
    assert "Stage (inferred from the cause): `token_embeddings`." in report


def _rewrite_manifest(baseline: Path, edit: dict[str, str]) -> None:
    """Change the recorded spec strings and re-sign manifest.json in SHA256SUMS."""
    path = baseline / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["adapters"]:
        entry["spec"] = edit.get(entry["spec"], entry["spec"])
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sums = (baseline / "SHA256SUMS").read_text().splitlines()
    sums = [
        f"{digest}  manifest.json" if line.endswith("  manifest.json") else line for line in sums
    ]
    (baseline / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")


def test_a_recorded_spec_invalid_today_costs_the_rebuild_probe_not_the_finding(
    bpe_model: Path, tmp_path: Path
) -> None:
    _create(
        bpe_model, tmp_path / "b", _texts(tmp_path / "t.jsonl", EDGE_TEXTS), "custom:strip=true"
    )
    _rewrite_manifest(tmp_path / "b", {"custom:strip=true": "custom:strip=true,retired=1"})
    code, summary, _ = _gate(tmp_path / "b", tmp_path / "o", "--adapter", "custom")
    assert code == 1
    assert summary["passed"] is False
    pair = summary["pairs"][0]
    assert [(c["cause"], c["explained"]) for c in pair["causes"]] == [("strip", 5)]
    assert pair["diagnosis"]["baseline_reproduced"] == 0
    assert pair["diagnosis"]["baseline_rebuild_skipped"].startswith(
        "SpecError: adapter 'custom' has no option 'retired'"
    )
    assert pair["diagnosis"]["first_stage_evidence"] == "inferred"


@pytest.mark.parametrize(
    ("evidence", "line"),
    [
        ("measured", "First stage that differs: `pooled`."),
        ("inferred", "Stage (inferred from the cause): `pooled`."),
    ],
)
def test_report_md_marks_an_inferred_stage(evidence: str, line: str) -> None:
    from parity.report.markdown import stage_lines

    diagnosis = {"first_stage": "pooled", "first_stage_evidence": evidence}
    assert stage_lines(diagnosis) == [line, ""]
    assert stage_lines({"first_stage": "pooled"}) == [
        "Stage (inferred from the cause): `pooled`.",
        "",
    ]
    assert stage_lines({"first_stage": None}) == []
