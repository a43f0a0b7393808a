"""GitHub Actions: the job summary ($GITHUB_STEP_SUMMARY) and `::error` annotations."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from parity.cli import main
from parity.report.ci import error_annotations, publish

CAUSE = {
    "cause": "truncation",
    "also": [],
    "detail": "bce truncates at 512 tokens,\nst at 256.",
    "fix": "set max_length=256 on bce (50% of texts)",
    "evidence": "measured",
    "explained": 1,
}


def _summary() -> dict[str, Any]:
    stats = {m: {"max": 0.1} for m in ("max_abs", "cosine", "euclidean", "rel_euclidean")}
    pair = {"n": 2, "stats": stats, "decided_by": {"euclidean": 1}}
    return {
        "passed": False,
        "pairs": [
            {"a": "st", "b": "custom", "passed": True, "failures": 0, "causes": [], **pair},
            {"a": "st", "b": "bce", "passed": False, "failures": 1, "causes": [CAUSE], **pair},
        ],
    }


def test_annotations_name_each_failing_pair_escaped_as_github_reads_them() -> None:
    assert error_annotations(_summary()) == [
        "::error title=parity%3A st vs bce::1 of 2 texts beyond tolerance; truncation: bce "
        "truncates at 512 tokens,%0Ast at 256. Fix: set max_length=256 on bce (50%25 of texts)"
    ]


def test_publish_appends_the_summary_and_prints_annotations_only_on_github(
    tmp_path: Path,
) -> None:
    target = tmp_path / "step_summary.md"
    target.write_text("earlier step\n")
    stream = io.StringIO()
    publish(_summary(), "parity run", {"GITHUB_STEP_SUMMARY": str(target)}, stream)
    text = target.read_text()
    assert text.startswith("earlier step\n## parity run\n\n**FAIL: 1 of 2 pairs differ")
    assert "| st vs bce | **FAIL** | 1/2 |" in text
    assert "- st vs bce: **truncation** (measured, 1 text): bce truncates" in text
    assert stream.getvalue() == ""  # not GitHub Actions: no workflow commands
    publish(_summary(), "parity run", {"GITHUB_ACTIONS": "true"}, stream)
    assert stream.getvalue().startswith("::error title=parity%3A st vs bce::")
    publish(_summary(), "parity run", {}, stream)
    assert target.read_text() == text  # nothing set: nothing appended


@pytest.mark.slow
def test_parity_run_publishes_to_the_job_summary(
    bpe_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a b", "c\nd"]))
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--quiet", "--no-retrieval"]
    argv += ["--adapter", "sentence-transformers", "--adapter", "langchain"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("parity: FAIL: 1 of 1 pair(s) differ")
    assert "::error title=parity%3A sentence-transformers vs langchain::1 of 2 texts" in (
        captured.err
    )
    assert "**FAIL: 1 of 1 pairs differ beyond tolerance**" in target.read_text()
    assert "**newline** (measured, 1 text)" in target.read_text()
