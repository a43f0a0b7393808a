"""`parity run --stream`: chunked reading, and a streamed run agreeing with a normal one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest

from parity.adapters import AdapterSpec
from parity.cli import main
from parity.errors import ParityInputError
from parity.files import text_sha256
from parity.runner import run
from parity.texts import builtin_corpus, iter_text_chunks, load_texts
from tests.run_outputs import same_rows

# strip=true drops the corpus's edge whitespace: some texts fail, diagnosed as "strip"
ADAPTERS = ["custom:strip=true", "sentence-transformers", "custom"]
TEXTS = ["a", " edge ", "line\u2028sep", "中文", "", "x\ty", "last"]


def _write(path: Path, texts: list[str]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    elif path.suffix == ".txt":
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    elif path.suffix == ".csv":
        pd.DataFrame({"text": texts}).to_csv(path, index=False)
    else:
        pd.DataFrame({"text": texts}).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".txt"])
def test_chunks_hold_the_files_texts_in_order(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"t{suffix}", TEXTS)
    chunks = list(iter_text_chunks(path, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [t for c in chunks for t in c] == load_texts(path) == TEXTS


def test_a_txt_of_crlf_lines_and_a_lone_newline_read_as_load_texts(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"one\r\ntwo\r\n\r\nfour")
    assert [t for c in iter_text_chunks(crlf, 2) for t in c] == load_texts(crlf)
    lone = tmp_path / "lone.txt"
    lone.write_bytes(b"\n")
    with pytest.raises(ParityInputError, match="no texts"):
        list(iter_text_chunks(lone, 2))


def test_a_bad_line_after_the_first_chunk_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('"a"\n"b"\n\n"c"\n{"txt": 1}\n', encoding="utf-8")
    chunks = iter_text_chunks(path, 2)
    assert next(chunks) == ["a", "b"]
    with pytest.raises(ParityInputError, match=r"line 5: object has no 'text' key"):
        next(chunks)


def _cli(model: Path, texts: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["run", "--model", str(model), "--texts", str(texts), "--out", str(out), "--quiet"]
    args += ["--no-retrieval", "--no-cache", *extra]
    for spec in ADAPTERS:
        args += ["--adapter", spec]
    code = main(args)
    return code, json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_chunks_of_64_give_a_runs_rows_and_vectors_in_order(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("parity.stream.HTML_ROWS", 50)
    corpus = builtin_corpus()
    texts = [
        f"{corpus[i % len(corpus)]} #{i}" if i % 3 else corpus[i % len(corpus)] for i in range(300)
    ]
    path = _write(tmp_path / "texts.jsonl", texts)
    code, normal = _cli(bpe_model, path, tmp_path / "normal")
    monkeypatch.setenv("PARITY_STREAM_CHUNK", "64")
    shards = tmp_path / "vectors"
    args = ("--stream", "--keep-vectors", str(shards))
    streamed_code, streamed = _cli(bpe_model, path, tmp_path / "streamed", *args)
    assert code == streamed_code == 1 and streamed["n_texts"] == 300
    for a, b in zip(normal["pairs"], streamed["pairs"], strict=True):
        assert a["failures"] == b["failures"] and a["causes"] == b["causes"]
    same_rows(tmp_path / "normal/results.parquet", tmp_path / "streamed/results.parquet")
    page = (tmp_path / "streamed/report.html").read_text(encoding="utf-8")
    assert "Figures drawn from a fixed random sample of 50 of the 300 texts of each pair" in page
    reference = run([AdapterSpec.parse(s) for s in ADAPTERS], texts, model=bpe_model)
    for label in ADAPTERS:
        files = sorted((shards / label).glob("*.npy"))
        assert [f.name for f in files] == [f"{k:06d}.npy" for k in range(5)]
        vectors = np.concatenate([np.load(f) for f in files])
        np.testing.assert_allclose(vectors, reference.embeddings[label], rtol=0, atol=1e-6)
        hashes = [
            line
            for f in sorted((shards / label).glob("*.sha256"))
            for line in f.read_text().split()
        ]
        assert hashes == [text_sha256(t) for t in texts]


@pytest.mark.slow
def test_a_malformed_line_mid_file_is_exit_2_and_no_pass(
    bpe_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps({"text": f"text {i}"}) for i in range(150)]
    lines[99] = '{"text": "broken'
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    monkeypatch.setenv("PARITY_STREAM_CHUNK", "64")
    code, summary = _cli(bpe_model, path, out, "--stream")
    assert code == 2
    assert summary["passed"] is False and "line 100: invalid JSON" in summary["error"]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no rows, no report


def test_stream_and_no_stream_together_are_argparses_exit_2(
    bpe_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _write(tmp_path / "t.jsonl", TEXTS)
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--stream", "--no-stream"]
    with pytest.raises(SystemExit) as exited:  # argparse's own usage errors
        main([*argv, "--adapter", "custom", "--adapter", "langchain"])
    assert exited.value.code == 2
    assert "argument --no-stream: not allowed with argument --stream" in capsys.readouterr().err


def test_a_file_streams_from_the_size_threshold_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parity.stream import AUTO_BYTES, streams_by_default

    path = _write(tmp_path / "t.jsonl", TEXTS)
    size = path.stat().st_size
    assert AUTO_BYTES == 64 * 2**20 and not streams_by_default(path)
    monkeypatch.setenv("PARITY_STREAM_BYTES", str(size))
    assert streams_by_default(path)
    monkeypatch.setenv("PARITY_STREAM_BYTES", str(size + 1))
    assert not streams_by_default(path)
    assert not streams_by_default(tmp_path / "missing.jsonl")  # its reading says what is wrong
    monkeypatch.setenv("PARITY_STREAM_BYTES", "64M")
    with pytest.raises(ParityInputError, match="PARITY_STREAM_BYTES='64M': give a file size"):
        streams_by_default(path)


def test_a_streamed_run_writes_the_csv_and_junit_a_run_does(
    bpe_model: Path, tmp_path: Path
) -> None:
    texts = _write(tmp_path / "t.jsonl", TEXTS)
    junit = tmp_path / "junit.xml"
    code, summary = _cli(
        bpe_model, texts, tmp_path / "s", "--stream", "--csv", "--junit", str(junit)
    )
    assert code == 1  # strip=true differs on " edge "
    rows = pd.read_parquet(tmp_path / "s/results.parquet")
    csv = pd.read_csv(tmp_path / "s/results.csv", keep_default_na=False, na_values=[""])
    assert len(rows) == len(csv) == 3 * len(TEXTS)
    assert csv["text"].fillna("").tolist() == rows["text"].tolist()
    assert csv["passed"].tolist() == rows["passed"].tolist() and not csv["passed"].all()
    np.testing.assert_allclose(csv["euclidean"], rows["euclidean"], rtol=1e-12)
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == [f"{p['a']} vs {p['b']}" for p in summary["pairs"] if not p["passed"]]
    assert failed == ["custom:strip=true vs sentence-transformers", "custom:strip=true vs custom"]


def test_stream_without_a_texts_file_is_one_exit_2_line(
    bpe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--model", str(bpe_model), "--stream", "--quiet"]
    code = main([*argv, "--adapter", "custom", "--adapter", "langchain"])
    err = capsys.readouterr().err
    assert (
        code == 2 and err == "parity: error: --stream needs --texts FILE; give the file to stream\n"
    )


def test_the_html_sample_is_uniform_and_holds_the_worst_texts(tmp_path: Path) -> None:
    from parity.stream import html_frame

    n = 10_000
    ids = np.arange(n)
    frames = []
    for pair, failing_every in (("a vs b", 4), ("a vs c", 1000)):
        frames.append(
            pd.DataFrame(
                {
                    "text_id": ids,
                    "text": [f"t{i}" for i in ids],
                    "pair": pair,
                    "euclidean": ids / n,
                    "passed": ids % failing_every != 0,
                }
            )
        )
    path = tmp_path / "results.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(path)
    worst = {"a vs c": {0, 5000, 9999}}
    sample, most = html_frame(path, worst, limit=1000)
    again, _ = html_frame(path, worst, limit=1000)
    pd.testing.assert_frame_equal(sample, again)  # a fixed sample
    assert most == n and sample.groupby("pair").size().to_dict() == {"a vs b": 1000, "a vs c": 1000}
    quarter = sample[sample["pair"] == "a vs b"]
    assert 0.2 < (~quarter["passed"]).mean() < 0.3  # a quarter fail, in the sample too
    rare = sample[sample["pair"] == "a vs c"]
    assert {0, 5000, 9999} <= set(rare["text_id"])  # the worst texts, whatever the draw
    assert rare["text_id"].is_monotonic_increasing and (~rare["passed"]).sum() < 10


@pytest.mark.slow
def test_a_streamed_run_reads_its_named_cache_chunk_by_chunk(
    bpe_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = _write(tmp_path / "t.jsonl", [f"{builtin_corpus()[i % 120]} #{i}" for i in range(300)])
    monkeypatch.setenv("PARITY_STREAM_CHUNK", "64")
    monkeypatch.delenv("PARITY_CACHE")
    monkeypatch.chdir(tmp_path)
    specs = ["custom", "custom:label=again", "custom:strip=true"]
    argv = ["run", "--model", str(bpe_model), "--texts", str(texts), "--stream", "--no-retrieval"]
    for spec in specs:
        argv += ["--adapter", spec]
    assert main([*argv, "--out", "plain"]) == 1
    assert not (tmp_path / ".parity-cache").exists()  # a stream fills only a cache it is given
    cache = ["--cache", str(tmp_path / "cache")]
    assert main([*argv, "--out", "cold", *cache]) == 1
    assert "from the cache" not in capsys.readouterr().err
    assert main([*argv, "--out", "warm", *cache]) == 1
    err = capsys.readouterr().err
    for label in ("custom", "custom:strip=true"):  # four chunks of 64, then one of 44
        assert err.count(f"{label}: 64 of 64 texts from the cache") == 4
        assert err.count(f"{label}: 44 of 44 texts from the cache") == 1
    assert "again: 64 of 64 texts from the cache" not in err  # the same config: embedded
    plain = json.loads((tmp_path / "plain/summary.json").read_text())
    warm = json.loads((tmp_path / "warm/summary.json").read_text())
    assert [p["failures"] for p in warm["pairs"]] == [p["failures"] for p in plain["pairs"]]
    assert warm["pairs"][1]["stats"] == plain["pairs"][1]["stats"]
