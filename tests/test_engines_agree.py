"""One verdict however a run is made: `parity run` on the built-in corpus gives the same exit
code, summary.json figures, causes and per-text rows in memory, from the embedding cache,
recalled as an unchanged run, streamed (chosen by the file's size), and on a local 2-CPU Ray
cluster, whole or streamed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from parity.cli import main
from parity.metrics import METRICS
from parity.texts import builtin_corpus
from tests.run_outputs import same_rows

# strip=true drops the corpus's edge whitespace: 16 texts fail against custom, cause "strip"
SPECS = ["custom", "custom:strip=true", "langchain"]


def _run(
    model: Path, texts: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    argv = ["run", "--model", str(model), "--texts", str(texts), "--out", str(out)]
    argv += ["--no-retrieval", *extra]
    for spec in SPECS:
        argv += ["--adapter", spec]
    code = main(argv)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return code, summary, capsys.readouterr().err


def _same_summary(mine: dict[str, Any], plain: dict[str, Any]) -> None:
    assert (mine["passed"], mine["n_texts"]) == (plain["passed"], plain["n_texts"])
    assert [a["config"] for a in mine["adapters"]] == [a["config"] for a in plain["adapters"]]
    for a, b in zip(mine["pairs"], plain["pairs"], strict=True):
        assert (a["a"], a["b"], a["n"], a["passed"]) == (b["a"], b["b"], b["n"], b["passed"])
        assert (a["failures"], a["decided_by"]) == (b["failures"], b["decided_by"])
        for metric in METRICS:
            for stat, value in b["stats"][metric].items():
                assert a["stats"][metric][stat] == pytest.approx(value, abs=1e-6), (metric, stat)
        causes = [(c["cause"], c["explained"], c["indices"]) for c in b["causes"]]
        assert [(c["cause"], c["explained"], c["indices"]) for c in a["causes"]] == causes


@pytest.mark.slow
def test_cache_streaming_and_ray_give_a_plain_runs_verdict_figures_and_rows(
    bpe_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in builtin_corpus()))
    monkeypatch.setenv("PARITY_STREAM_BYTES", "1")  # every --texts file streams unless told
    cache = ("--cache", str(tmp_path / "cache"))
    plain_code, plain, _ = _run(bpe_model, corpus, tmp_path / "plain", capsys, "--no-stream")
    assert plain_code == 1 and plain["n_texts"] == 120
    assert (
        plain["pairs"][0]["failures"] == 16 and plain["pairs"][0]["causes"][0]["cause"] == "strip"
    )
    assert (tmp_path / "plain/report.html").is_file()

    runs: dict[str, tuple[int, dict[str, Any], str]] = {}
    runs["cache-cold"] = _run(bpe_model, corpus, tmp_path / "cold", capsys, "--no-stream", *cache)
    warm = ("--no-stream", "--rerun", *cache)  # run again, its vectors from the cache
    runs["cache-warm"] = _run(bpe_model, corpus, tmp_path / "warm", capsys, *warm)
    runs["remembered"] = _run(
        bpe_model, corpus, tmp_path / "remembered", capsys, "--no-stream", *cache
    )
    runs["stream"] = _run(bpe_model, corpus, tmp_path / "stream", capsys, "--no-cache")
    runs["stream-warm"] = _run(bpe_model, corpus, tmp_path / "stream-warm", capsys, *cache)
    runs["ray"] = _run(
        bpe_model, corpus, tmp_path / "ray", capsys, "--engine", "ray", "--no-stream"
    )
    runs["stream-ray"] = _run(bpe_model, corpus, tmp_path / "stream-ray", capsys, "--engine", "ray")
    for name, (code, summary, _) in runs.items():
        assert code == plain_code, name
        _same_summary(summary, plain)
        folder = tmp_path / name.replace("cache-", "")
        same_rows(folder / "results.parquet", tmp_path / "plain/results.parquet")

    assert "from the cache" not in runs["cache-cold"][2]
    # the second side is custom with strip: its own key; each side's 120 texts are read back
    assert runs["cache-warm"][2].count("120 of 120 texts from the cache") == 3
    assert "streaming it in chunks" in runs["stream"][2]
    page = (tmp_path / "stream/report.html").read_text(encoding="utf-8")
    assert "Figures drawn from" not in page  # 120 texts: every one drawn
    plain_page = (tmp_path / "plain/report.html").read_text(encoding="utf-8")
    figures = 'class="plotly-graph-div"'
    assert page.count(figures) == plain_page.count(figures) > 3  # every figure a run draws
    assert not list((tmp_path / "stream").glob(".parity-stream-*"))  # its work files go
    assert "parity: unchanged since the run of " in runs["remembered"][2]
    assert runs["stream-warm"][2].count("120 of 120 texts from the cache") == 3
    assert "on 2 Ray workers" in runs["ray"][2]  # two actors per adapter, each loading once
    assert "streaming it in chunks" in runs["stream-ray"][2]
    assert "starting a pool of ray workers per adapter" in runs["stream-ray"][2]
    assert runs["stream-ray"][2].count("120 texts in") == 3  # each pool's one chunk
