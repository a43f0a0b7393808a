"""GitHub Actions: the job summary ($GITHUB_STEP_SUMMARY) and `::error` annotations."""

from __future__ import annotations

import io
import json
import os
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


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as sys.stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_pipe_gets_the_step_lines() -> None:
    from parity.report.terminal import BarProgress, progress_for
    from parity.runner import Progress

    assert type(progress_for(_Terminal())) is BarProgress
    assert type(progress_for(io.StringIO())) is Progress
    assert progress_for(_Terminal(), quiet=True).stream is None


@pytest.mark.slow
def test_the_bar_follows_a_real_embedding_chunk_by_chunk(bpe_model: Path) -> None:
    from parity.adapters import AdapterSpec
    from parity.report.terminal import BarProgress
    from parity.runner import embed_specs

    stream = _Terminal()
    texts = [f"text number {i}" for i in range(700)]  # two chunks of runner.CHUNK (512)
    embed_specs([AdapterSpec.parse("custom")], texts, bpe_model, BarProgress(stream))
    shown = stream.getvalue()
    assert "] custom: loading" in shown  # the other steps stay lines
    assert "custom: 100%" in shown and "700/700" in shown  # tqdm's bar, not a step line
    assert "512/700" in shown
    assert "custom: 512/700 texts" not in shown  # the chunk step line became the bar


def test_the_closing_table_has_the_worst_metric_failures_cause_and_report_path() -> None:
    from parity.report.terminal import final_table

    summary = _summary() | {"tolerance": {"max_abs": 0.005, "euclidean": 0.05}}
    bce = summary["pairs"][1]
    bce["stats"] = bce["stats"] | {"euclidean": {"max": 2.0}}  # 40x its tolerance: the worst
    assert final_table(summary, "reports/latest").splitlines() == [
        "pair          worst vs tolerance   failing  top cause",
        "st vs custom  max_abs 0.1 > 0.005  0/2      -",
        "st vs bce     euclidean 2 > 0.05   1/2      truncation (measured)",
        "report: reports/latest/report.html",
    ]


def _gate(**baseline: Any) -> dict[str, Any]:
    """`make gate`'s shape: both adapters match their baseline, and st vs bce fails as it did
    when the baseline was made (truncation), so the gate passes."""
    pair = _summary()["pairs"][1]
    section = {
        "adapters": {"st": {"drifted": False, "failures": 0, "n": 2}},
        "newly_failing_pairs": [],
        "ndcg_failures": [],
        "max_ndcg_drop": 0.005,
        "updated": None,
    } | baseline
    drift = pair | {"a": "st@baseline", "b": "st", "kind": "baseline", "adapter": "st"}
    drift |= {"passed": True, "failures": 0, "causes": []}
    return {"passed": True, "baseline": section, "pairs": [drift, pair | {"kind": "cross"}]}


def test_a_passing_gate_annotates_nothing_for_failures_that_predate_the_baseline() -> None:
    assert error_annotations(_gate()) == []
    newly = error_annotations(_gate(newly_failing_pairs=["st vs bce"]))
    assert newly == [
        "::error title=parity%3A st vs bce::passed at baseline time, fails now: 1 of 2 texts "
        "beyond tolerance; truncation: bce truncates at 512 tokens,%0Ast at 256. "
        "Fix: set max_length=256 on bce (50%25 of texts)"
    ]


def test_a_gate_annotates_drift_and_ndcg_drops_but_nothing_once_updated() -> None:
    drifted = _gate(adapters={"st": {"drifted": True, "failures": 1, "n": 2}}, ndcg_failures=["st"])
    drifted["pairs"][0] |= {"passed": False, "failures": 1}
    assert error_annotations(drifted) == [
        "::error title=parity%3A st against the baseline::1 of 2 texts beyond tolerance; "
        "nDCG@10 dropped more than 0.005 from the baseline"
    ]
    updated = drifted | {"baseline": drifted["baseline"] | {"updated": "baselines/main"}}
    assert error_annotations(updated) == []


def test_the_suite_never_writes_to_a_real_github_job_summary() -> None:
    # conftest removes both at import: on GitHub Actions every command a test runs would
    # otherwise append to the job's summary and print ::error lines into its log
    assert "GITHUB_STEP_SUMMARY" not in os.environ
    assert "GITHUB_ACTIONS" not in os.environ
