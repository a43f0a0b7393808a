"""The `parity` command: exit codes, the summary.json contract, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.cli import main

CONTRACT_PAIR_KEYS = {"a", "b", "n", "passed", "failures", "stats", "worst", "causes"}


def _texts(tmp_path: Path, texts: list[object], name: str = "texts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def run_cli(model: Path, texts: Path, out: Path, *args: str) -> int:
    """`parity run --quiet` on model and texts into out; bare words in args are adapter specs."""
    argv = ["run", "--model", str(model), "--texts", str(texts), "--out", str(out), "--quiet"]
    rest = list(args)
    while rest:
        word = rest.pop(0)
        argv += [word, rest.pop(0)] if word.startswith("--") else ["--adapter", word]
    return main(argv)


def test_run_passes_and_writes_the_contract(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _texts(tmp_path, ["hello world", " edge ", "a\nb", ""])
    out = tmp_path / "out"
    code = run_cli(bpe_model, texts, out, "sentence-transformers", "custom")
    assert code == 0
    assert capsys.readouterr().out.startswith("parity: PASS: 1 pair(s) within tolerance on 4 texts")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["tolerance"] == {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 5e-3}
    assert [a["label"] for a in summary["adapters"]] == ["sentence-transformers", "custom"]
    assert {"label", "name", "config"} <= set(summary["adapters"][0])
    pair = summary["pairs"][0]
    assert CONTRACT_PAIR_KEYS <= set(pair)
    assert set(pair["stats"]) == {"max_abs", "cosine", "euclidean", "rel_euclidean"}
    assert set(pair["stats"]["euclidean"]) == {"max", "mean", "p50", "p99"}
    assert {"index", "text", "max_abs", "cosine", "euclidean"} <= set(pair["worst"][0])
    assert pair["n"] == 4 and pair["failures"] == 0
    assert "PASS" in (out / "report.md").read_text()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_run_exits_1_on_a_divergence(bpe_model: Path, tmp_path: Path) -> None:
    texts = _texts(tmp_path, ["line one\nline two", "plain"])
    out = tmp_path / "out"
    code = run_cli(
        bpe_model, texts, out, "sentence-transformers", "langchain", "--tol", "euclidean=1e-2"
    )
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tolerance"]["euclidean"] == 1e-2
    assert summary["pairs"][0]["failures"] == 1
    assert summary["pairs"][0]["worst"][0]["text"] == "line one\nline two"
    assert "line one\\nline two" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--adapter", "sbert", "--adapter", "custom"],
            "unknown adapter 'sbert' in spec 'sbert'; choose from sentence-transformers, custom",
        ),
        (
            ["--adapter", "custom:colour=red", "--adapter", "custom:label=b"],
            "adapter 'custom' has no option 'colour'",
        ),
        (["--adapter", "custom"], "need at least two adapters"),
        (
            ["--adapter", "custom", "--adapter", "custom:label=b", "--tol", "l1=3"],
            "unknown metric 'l1'",
        ),
        (
            ["--adapter", "custom", "--adapter", "langchain", "--keep-vectors", "v", "--no-stream"],
            "--keep-vectors writes a streamed run's vectors: drop --no-stream",
        ),
        (  # a file this small does not stream by itself
            ["--adapter", "custom", "--adapter", "langchain", "--keep-vectors", "v"],
            "--keep-vectors needs --stream (and --texts FILE)",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    texts = _texts(tmp_path, ["x"])
    code = main(["run", "--model", str(bpe_model), "--texts", str(texts), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_null_text_exits_2_naming_file_and_line(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _texts(tmp_path, ["ok", None])
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--model",
            str(bpe_model),
            "--adapter",
            "custom",
            "--adapter",
            "sentence-transformers",
            "--texts",
            str(texts),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert (
        capsys.readouterr().err == f"parity: error: {texts} line 2: expected a string, got null\n"
    )
    assert not out.exists()


def test_empty_texts_and_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert (
        main(["run", "--adapter", "custom", "--adapter", "langchain", "--texts", str(empty)]) == 2
    )
    assert "no texts" in capsys.readouterr().err
    texts = _texts(tmp_path, ["x"])
    code = main(
        [
            "run",
            "--model",
            str(tmp_path / "nope"),
            "--adapter",
            "custom",
            "--adapter",
            "langchain",
            "--texts",
            str(texts),
        ]
    )
    assert code == 2
    assert "does not exist; pass a local model directory" in capsys.readouterr().err


def test_list_adapters_shows_options_and_availability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-adapters"]) == 0
    out = capsys.readouterr().out
    for line in (
        "bcembedding  (available)",
        "pooling=cls [cls|mean]",
        "max_length=512",
        "strip=False",
        "mode=documents [documents|query]",
        "label=NAME",
    ):
        assert line in out


def test_python_m_parity_exits_2_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "parity", "run", "--adapter", "nope", "--adapter", "custom"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("parity: error: unknown adapter 'nope'")
    assert "Traceback" not in result.stderr


def test_summary_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from parity import files
    from parity.report import summary as summary_module

    target = tmp_path / "summary.json"
    target.write_text('{"old": true}')

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        summary_module.write_json(target, {"new": True})
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_run_reports_retrieval_impact_per_pair(bpe_model: Path, tmp_path: Path) -> None:
    texts = _texts(tmp_path, ["hello world", "plain"])
    out = tmp_path / "out"
    assert run_cli(bpe_model, texts, out, "sentence-transformers", "custom:dtype=bfloat16") in (
        0,
        1,
    )
    pair = json.loads((out / "summary.json").read_text())["pairs"][0]
    impact = pair["retrieval"]
    assert set(impact["score_delta"]) == {"cosine", "dot", "euclidean"}
    assert impact["score_delta"]["euclidean"]["max"] > 0  # bfloat16 moves every score
    assert 0 < impact["top10_overlap"] <= 1
    assert impact["ndcg@10"]["queries"] == 32
    assert impact["ndcg@10"]["diff"] == pytest.approx(
        impact["ndcg@10"]["b"] - impact["ndcg@10"]["a"]
    )
    row = next(
        line
        for line in (out / "report.md").read_text().splitlines()
        if line.startswith("| sentence-transformers vs custom:dtype=bfloat16 | ")
        and line.count("|") == 11
    )
    assert f"{impact['ndcg@10']['a']:.3g}" in row


def test_no_retrieval_skips_the_retrieval_set(bpe_model: Path, tmp_path: Path) -> None:
    texts = _texts(tmp_path, ["hello world"])
    out = tmp_path / "out"
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--out", str(out)]
    argv += ["--adapter", "sentence-transformers", "--adapter", "custom", "--no-retrieval"]
    assert main([*argv, "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "retrieval" not in summary["pairs"][0]
    assert "Retrieval impact" not in (out / "report.md").read_text()


def test_a_baseline_recorded_with_every_metric_off_is_gated_with_every_metric_off(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from parity.metrics import Tolerance

    # as_dict() leaves out a metric that is off, so `--tol off` records {}: that must read back
    # as "all off", not as the 5e-3 defaults (None, nothing recorded, is the defaults)
    assert Tolerance.parse("off").as_dict() == {}
    assert Tolerance.from_dict({}) == Tolerance.parse("off")
    assert Tolerance.from_dict(None) == Tolerance()
    texts = tmp_path / "edge.jsonl"
    texts.write_text('"  hello world"\n"plain text"\n" x "\n', encoding="utf-8")
    base = tmp_path / "base"
    create = ["baseline", "create", "--model", str(bpe_model), "--texts", str(texts), "--quiet"]
    assert (
        main([*create, "--out", str(base), "--adapter", "custom:strip=true", "--tol", "off"]) == 0
    )
    assert json.loads((base / "manifest.json").read_text())["tolerance"] == {}
    out = tmp_path / "gate"
    gate = ["gate", "--baseline", str(base), "--out", str(out), "--quiet", "--no-diagnose"]
    # custom without strip drifts on 2 of 3 texts: beyond 5e-3, within "off"
    assert main([*gate, "--adapter", "custom"]) == 0
    assert json.loads((out / "summary.json").read_text())["tolerance"] == {}
    assert main([*gate, "--adapter", "custom", "--tol", "5e-3"]) == 1


def test_tiny_model_out_below_a_file_is_exit_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "tiny"
    assert main(["tiny-model", "--kind", "bpe", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"parity: error: {out}: Not a directory (from --out {out})\n"
    )
