"""`parity fuzz`: batch-first search finds and shrinks real divergences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.cli import main


def fuzz(model: Path, tmp_path: Path, *adapters: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = tmp_path / "out"
    args = [
        "fuzz",
        "--model",
        str(model),
        "--profile",
        "ci",
        "--out",
        str(out),
        "--quiet",
        "--regressions",
        str(tmp_path / "regressions.jsonl"),
    ]
    for spec in adapters:
        args += ["--adapter", spec]
    code = main(args)
    return code, json.loads((out / "summary.json").read_text())


def test_strip_is_found_and_shrunk_to_an_edge_whitespace_text(
    bpe_model: Path, tmp_path: Path
) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom:strip=true")
    assert code == 1
    minimal = summary["pairs"][0]["minimal_failing"]
    assert len(minimal["text"]) <= 3
    assert minimal["text"] != minimal["text"].strip()
    assert minimal["euclidean"] > 5e-3
    assert summary["pairs"][0]["causes"][0]["cause"] == "strip"
    records = [json.loads(x) for x in (tmp_path / "regressions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [minimal["text"]]
    code, _ = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom:strip=true")
    assert len((tmp_path / "regressions.jsonl").read_text().splitlines()) == 1  # deduplicated


def test_langchain_newline_is_found(bpe_model: Path, tmp_path: Path) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "langchain")
    assert code == 1
    assert "\n" in summary["pairs"][0]["minimal_failing"]["text"]
    assert summary["pairs"][0]["causes"][0]["cause"] == "newline"


def test_matched_adapters_find_nothing_in_the_ci_budget(bpe_model: Path, tmp_path: Path) -> None:
    code, summary = fuzz(bpe_model, tmp_path, "sentence-transformers", "custom")
    assert code == 0
    assert summary["pairs"][0]["minimal_failing"] is None
    assert summary["pairs"][0]["n"] > 25
    assert summary["max_examples"] == 25
    assert not (tmp_path / "regressions.jsonl").exists()


def test_fuzz_needs_two_adapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--adapter", "custom", "--out", str(tmp_path)]) == 2
    assert "need at least two adapters" in capsys.readouterr().err
