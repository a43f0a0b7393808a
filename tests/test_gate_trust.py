"""The gate's verdict covers every recorded adapter, names what a given spec overrode, and fails
on nDCG drops only (a gain is reported)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main

TEXTS = ["plain text", "hello world", "a longer sentence with several words in it"]


def _create(model: Path, out: Path, tmp_path: Path, *adapters: str) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(t) + "\n" for t in TEXTS), encoding="utf-8")
    argv = ["baseline", "create", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    for spec in adapters:
        argv += ["--adapter", spec]
    assert main([*argv, "--quiet"]) == 0


def _gate(baseline: Path, out: Path, *args: str) -> tuple[int, dict]:
    code = main(["gate", "--baseline", str(baseline), "--out", str(out), "--quiet", *args])
    return code, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def two_adapters(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate_trust")
    _create(bpe_model, root / "base", root, "sentence-transformers", "custom")
    return root / "base"


def test_a_gate_given_one_adapter_checks_the_others_as_recorded_and_names_the_override(
    two_adapters: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary = _gate(
        two_adapters, tmp_path / "out", "--adapter", "custom:max_length=8", "--no-diagnose"
    )
    section = summary["baseline"]
    assert sorted(section["adapters"]) == ["custom:max_length=8", "sentence-transformers"]
    assert section["adapters"]["sentence-transformers"]["max_abs"] == 0.0
    assert section["overridden"] == {"custom": "custom:max_length=8"}
    out = capsys.readouterr().out
    assert "overridden: custom as custom:max_length=8 (the other 1 as recorded)" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- `custom` gated as `custom:max_length=8`" in report
    # max_length=8 truncates the longest text: that is drift, and the verdict says so
    assert code == 1 and section["drifted"] == ["custom:max_length=8"]


def test_drift_in_an_adapter_not_given_still_fails_the_gate(
    two_adapters: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    baseline = tmp_path / "base"
    shutil.copytree(two_adapters, baseline)
    # move sentence-transformers' recorded vectors (checksums rewritten: a consistent baseline)
    file = baseline / "sentence-transformers.npz"
    with np.load(file) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["texts"] = arrays["texts"] + np.float32(0.1)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    file.write_bytes(buffer.getvalue())
    sums = (baseline / "SHA256SUMS").read_text().splitlines()
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    (baseline / "SHA256SUMS").write_text(
        "".join(
            (f"{digest}  {file.name}" if line.endswith(file.name) else line) + "\n" for line in sums
        )
    )
    code, summary = _gate(baseline, tmp_path / "out", "--adapter", "custom", "--no-diagnose")
    assert code == 1
    assert summary["baseline"]["drifted"] == ["sentence-transformers"]
    assert summary["baseline"]["overridden"] == {}
    assert "sentence-transformers drifted (3/3 texts" in capsys.readouterr().out


def test_an_ndcg_gain_is_reported_and_does_not_fail(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # recorded in float32; bfloat16 happens to rank this tiny model's retrieval set better
    _create(bpe_model, tmp_path / "base", tmp_path, "custom")
    code, summary = _gate(
        tmp_path / "base",
        tmp_path / "out",
        "--adapter",
        "custom:dtype=bfloat16",
        "--max-ndcg-drop",
        "0",
        "--tol",
        "1",
        "--no-diagnose",
    )
    gain = summary["pairs"][0]["retrieval"]["ndcg@10"]["diff"]
    assert gain > 0
    assert code == 0
    section = summary["baseline"]
    assert section["ndcg_failures"] == []
    assert section["ndcg_gains"] == {"custom:dtype=bfloat16": pytest.approx(gain)}
    assert section["ndcg_changes"] == {"custom:dtype=bfloat16": pytest.approx(gain)}
    out = capsys.readouterr().out
    assert f"nDCG@10 rose (not a failure): custom:dtype=bfloat16 +{gain:.3g}" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"- custom:dtype=bfloat16: +{gain:.3g}" in report


# --- cross pairs: recorded even when one fails, so a newly failing pair is caught ---


def test_a_baseline_records_every_cross_pair_and_the_gate_names_a_newly_failing_one(
    bpe_model: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "edge.jsonl"
    edge = [" hello world", "plain text here and more words after it", "tail "]
    texts.write_text("".join(json.dumps(t) + "\n" for t in edge), encoding="utf-8")
    argv = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts)]
    argv += ["--adapter", "sentence-transformers", "--adapter", "custom"]
    argv += ["--adapter", "custom:max_length=4,label=short", "--no-retrieval"]
    assert main([*argv, "--out", str(tmp_path / "base"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "base" / "manifest.json").read_text())
    recorded = {(p["a"], p["b"]): p["passed"] for p in manifest["cross_pairs"]}
    assert recorded == {
        ("sentence-transformers", "custom"): True,
        ("sentence-transformers", "short"): False,
        ("custom", "short"): False,
    }
    # custom now strips: sentence-transformers vs custom, which passed at baseline, fails
    code, summary = _gate(
        tmp_path / "base",
        tmp_path / "out",
        "--adapter",
        "custom:strip=true,label=custom",
        "--no-diagnose",
    )
    assert code == 1
    assert summary["baseline"]["newly_failing_pairs"] == ["sentence-transformers vs custom"]


# --- the committed baseline is the tool's own output (`make baseline`) ---

ROOT = Path(__file__).parent.parent
FIXTURE = ROOT / "fixtures" / "baselines" / "minilm"
VOLATILE = ("versions",)  # library versions: the environment diff reports them, not this test


def _report_adapters() -> list[str]:
    """The --adapter specs of REPORT_ADAPTERS in the Makefile, which `make baseline` records."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^REPORT_ADAPTERS := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert match, "REPORT_ADAPTERS not found in the Makefile"
    return re.findall(r"--adapter (\S+)", match.group(1))


def _stable(manifest: dict) -> dict:
    """The manifest fields `parity baseline create` must reproduce exactly."""
    return {
        "schema": manifest["schema"],
        "model": {k: manifest["model"][k] for k in ("path", "bundled")},
        "texts": manifest["texts"],
        "retrieval": manifest["retrieval"],
        "dim": manifest["dim"],
        "tolerance": manifest["tolerance"],
        "adapters": [
            {**a, "describe": {k: v for k, v in a["describe"].items() if k not in VOLATILE}}
            for a in manifest["adapters"]
        ],
        "cross_pairs": manifest["cross_pairs"],
    }


@pytest.mark.slow
def test_the_committed_baseline_is_what_baseline_create_records_today(
    minilm: Path, tmp_path: Path
) -> None:
    from parity.baseline import create_baseline, load_baseline
    from parity.compare import SelfComparisonWarning, compare_pair
    from parity.metrics import Tolerance
    from parity.retrieval import load_retrieval_set
    from parity.texts import builtin_corpus

    committed = load_baseline(FIXTURE)
    assert committed.manifest["model"]["path"] == "bundled:all-MiniLM-L6-v2"
    assert [a["spec"] for a in committed.adapters] == _report_adapters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelfComparisonWarning)  # the report's business, not ours
        out, _ = create_baseline(
            _report_adapters(), builtin_corpus(), tmp_path / "now", retrieval=load_retrieval_set()
        )
    today = load_baseline(out)
    assert _stable(committed.manifest) == _stable(today.manifest), "run `make baseline`"
    tolerance = Tolerance.from_dict(committed.manifest["tolerance"])
    for label, recorded in committed.vectors.items():
        pair = compare_pair(
            "committed", recorded, label, today.vectors[label], today.texts, tolerance
        )
        assert pair.passed, f"{label}: {pair.failures} texts moved; run `make baseline`"
        retrieval = compare_pair(
            "committed",
            committed.retrieval_vectors[label],
            label,
            today.retrieval_vectors[label],
            load_retrieval_set().all_texts(),
            tolerance,
        )
        assert retrieval.passed, f"{label}: retrieval vectors moved; run `make baseline`"
