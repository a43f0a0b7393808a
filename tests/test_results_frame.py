"""Per-text results: one tidy pandas row per text and pair, written by every command, and the
frame summary.json is derived from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import parity
from parity.adapters import AdapterSpec
from parity.cli import main
from parity.compare import Comparison, compare_pair
from parity.errors import ParityInputError
from parity.files import current_umask
from parity.metrics import Tolerance
from parity.report.results import COLUMNS, load_results, results_frame, write_results
from parity.report.summary import build_summary

# 3 short texts, 3 long ones: a side that truncates at 8 tokens differs only on the long ones
TEXTS = ["one two", "a b c", "short", *(" ".join(["word"] * n) for n in (12, 20, 30))]


def _write_texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def truncated_run(bpe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`parity run --csv` of custom against custom:max_length=8 on the tiny BPE model."""
    tmp = tmp_path_factory.mktemp("results")
    out = tmp / "out"
    argv = ["run", "--model", str(bpe_model), "--texts", str(_write_texts(tmp)), "--quiet"]
    argv += ["--adapter", "custom", "--adapter", "custom:max_length=8,label=short"]
    code = main([*argv, "--no-retrieval", "--csv", "--out", str(out)])
    assert code == 1
    return out


@pytest.mark.slow
def test_run_writes_one_row_per_text_and_pair_whose_failures_match_summary(
    truncated_run: Path, bpe_model: Path
) -> None:
    frame = parity.load_results(truncated_run)
    summary = json.loads((truncated_run / "summary.json").read_text())
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(TEXTS) * len(summary["pairs"]) == 6
    assert frame["text"].tolist() == TEXTS
    assert frame["pair"].unique().tolist() == ["custom vs short"]
    pair = summary["pairs"][0]
    assert int((~frame["passed"]).sum()) == pair["failures"] == 3
    assert frame.loc[~frame["passed"], "text_id"].tolist() == [3, 4, 5]
    assert frame["euclidean"].max() == pytest.approx(pair["stats"]["euclidean"]["max"])
    # the token counts are each side's token lists: the short side stops at 8
    assert frame["tokens_b"].max() == 8
    adapter = AdapterSpec.parse("custom").build(bpe_model)
    adapter.load()
    try:
        assert frame["tokens_a"].tolist() == [len(t) for t in adapter.tokenize(TEXTS)]
    finally:
        adapter.close()
    assert frame["tokens_a"].tolist()[3:] == [25, 41, 61]  # the long texts, untruncated
    failing = frame[~frame["passed"]]
    assert set(failing["cause"]) == {"truncation"}
    assert set(failing["evidence"]) == {"measured"}
    assert failing["deciding_metric"].isin(["max_abs", "cosine", "euclidean"]).all()
    assert frame.loc[frame["passed"], ["cause", "deciding_metric"]].isna().all().all()


@pytest.mark.slow
def test_report_md_names_the_cause_of_failing_worst_texts_only(truncated_run: Path) -> None:
    rows = [line for line in (truncated_run / "report.md").read_text().splitlines()]
    worst = [line for line in rows if line.startswith("| ") and "`'" in line]
    assert len(worst) == len(TEXTS)
    assert sum(line.endswith("| max_abs, cosine, euclidean | truncation |") for line in worst) == 3
    assert sum(line.endswith("| none (within tolerance) | - |") for line in worst) == 3


@pytest.mark.slow
def test_csv_holds_the_same_rows_as_the_parquet(truncated_run: Path) -> None:
    from_csv = pd.read_csv(truncated_run / "results.csv")
    from_parquet = load_results(truncated_run / "results.parquet")
    assert from_csv["euclidean"].tolist() == pytest.approx(from_parquet["euclidean"].tolist())
    assert from_csv["passed"].tolist() == from_parquet["passed"].tolist()


def test_load_results_names_a_directory_without_results(tmp_path: Path) -> None:
    with pytest.raises(ParityInputError, match=r"no per-text results there; run `parity run"):
        parity.load_results(tmp_path)


def test_load_results_is_public_api() -> None:
    assert "load_results" in parity.__all__
    assert parity.load_results is load_results


def _comparison() -> Comparison:
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    b = np.array([[1.0, 0.0], [0.05, 0.9], [np.nan, 0.8]])  # row 1: euclidean 0.112
    return Comparison([compare_pair("x", a, "y", b, ["s", "t", "u"])], Tolerance())


def test_frame_names_the_deciding_metric_and_non_finite_rows() -> None:
    frame = results_frame(_comparison(), {"x": [["s"], ["t", "t"], ["u"]], "y": None})
    assert frame["deciding_metric"].tolist() == [None, "euclidean", "non-finite"]
    assert frame["tokens_a"].tolist() == [1, 2, 1]
    assert frame["tokens_b"].isna().all()


def test_summary_is_derived_from_the_frame_it_is_given() -> None:
    comparison = _comparison()
    frame = results_frame(comparison)
    frame.loc[0, ["passed", "euclidean"]] = [False, 9.0]  # what the frame says, summary says
    pair = build_summary(comparison, [], model="m", n_texts=3, frame=frame)["pairs"][0]
    assert pair["failures"] == 3
    assert pair["decided_by"] == {"max_abs": 1, "cosine": 0, "euclidean": 2, "non-finite": 1}
    untouched = build_summary(comparison, [], model="m", n_texts=3)["pairs"][0]
    assert untouched["failures"] == 2
    assert untouched == comparison.pairs[0].as_dict()


def test_every_failing_text_keeps_its_cause_past_the_first_50() -> None:
    """Two causes over 120 failing texts: the frame names each text's, summary.json lists 50."""
    from parity.diagnose.causes import Cause

    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 4))
    texts = [f"t{i}" for i in range(120)]
    comparison = Comparison([compare_pair("x", a, "y", a + 1.0, texts)], Tolerance())
    pair = comparison.pairs[0]
    first, second = (
        Cause("strip", "input_ids", "", 60, "fix"),
        Cause("pooling", "pooled", "", 60, "f"),
    )
    first.indices, second.indices = list(range(0, 120, 2)), list(range(1, 120, 2))
    pair.causes = [first.as_dict(), second.as_dict()]
    frame = results_frame(comparison)
    assert frame["cause"].tolist() == ["strip", "pooling"] * 60
    listed = pair.as_dict()["causes"]
    assert [len(c["indices"]) for c in listed] == [50, 50]


def _small_frame() -> pd.DataFrame:
    a = np.eye(3, 4)
    pairs = [compare_pair("x", a, "y", a.copy(), ["a", "b", "c"])]
    return results_frame(Comparison(pairs, Tolerance()))


def test_a_run_without_csv_removes_the_csv_an_earlier_run_left(tmp_path: Path) -> None:
    frame = _small_frame()
    assert write_results(tmp_path, frame, csv=True) == [
        tmp_path / "results.parquet",
        tmp_path / "results.csv",
    ]
    assert write_results(tmp_path, frame) == [tmp_path / "results.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


def test_results_go_through_a_temp_file_of_their_own(tmp_path: Path) -> None:
    # what a second run into the same --out holds while it writes: the old fixed temp name
    (tmp_path / "results.parquet.tmp").mkdir()
    (tmp_path / "results.csv.tmp").mkdir()
    paths = write_results(tmp_path, _small_frame(), csv=True)
    assert len(load_results(tmp_path)) == 3
    assert len(pd.read_csv(paths[1])) == 3
    # no temp file of this run is left beside them
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["results.csv", "results.csv.tmp", "results.parquet", "results.parquet.tmp"]
    assert (paths[0].stat().st_mode & 0o777) == 0o666 & ~current_umask()
