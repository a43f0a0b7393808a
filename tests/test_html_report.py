"""report.html and report.md as pure functions of summary.json and the per-text frame."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from parity.compare import Comparison, compare_pair
from parity.metrics import Tolerance
from parity.report.html import SCATTER_BUDGET, length_figure, render_html, token_diff, visible
from parity.report.markdown import render_markdown, texts_line
from parity.report.results import results_frame
from parity.report.summary import build_summary


def _truncating_comparison(n: int, cut: int = 256) -> tuple[Comparison, pd.DataFrame]:
    """n texts whose b side differs beyond tolerance exactly when the text has more than `cut`
    tokens (what a side truncating at `cut` does), with each side's token count."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 600, size=n)
    a = rng.normal(size=(n, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a + rng.normal(scale=1e-7, size=a.shape)
    b[lengths > cut] += 0.05
    pairs = [compare_pair("st", a, "bce", b, [f"text {i}" for i in range(n)])]
    comparison = Comparison(pairs, Tolerance())
    frame = results_frame(comparison)
    frame["tokens_a"] = pd.array(np.minimum(lengths, cut), dtype="Int64")
    frame["tokens_b"] = pd.array(np.minimum(lengths, 512), dtype="Int64")
    return comparison, frame


def _summary(comparison: Comparison, frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    adapters = [
        {"label": "st", "spec": "st", "config": {"max_length": 256, "device": "cpu"}},
        {"label": "bce", "spec": "bce", "config": {"max_length": 512, "device": "cpu"}},
    ]
    summary = build_summary(comparison, adapters, model="m", n_texts=len(frame), frame=frame)
    return summary | extra


def _cjk_texts(n: int, chars: int = 60) -> list[str]:
    """n distinct texts of `chars` CJK characters (3 UTF-8 bytes each, 6 as a JSON \\u escape)."""
    codes = 0x4E00 + (np.arange(n)[:, None] * 7 + np.arange(chars)) % 20_000
    return codes.astype(np.uint32).view(f"<U{chars}").ravel().tolist()  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_100k_text_report_of_four_adapters_stays_under_10_mb() -> None:
    # make parity-report's 4 adapters: 6 pairs of 100,000 texts of 60 non-ASCII characters,
    # each side truncating somewhere; the dots of all pairs share one budget
    n, labels = 100_000, ["st", "bce", "onnx", "fastembed"]
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 600, size=n)
    texts = _cjk_texts(n)
    vectors = {}
    for shift, label in enumerate(labels):
        v = rng.normal(size=(n, 8))
        vectors[label] = v / np.linalg.norm(v, axis=1, keepdims=True) + 1e-3 * shift
    pairs = [
        compare_pair(a, vectors[a], b, vectors[b], texts)
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
    ]
    comparison = Comparison(pairs, Tolerance())
    frame = results_frame(comparison)
    frame["tokens_a"] = pd.array(np.tile(np.minimum(lengths, 256), len(pairs)), dtype="Int64")
    frame["tokens_b"] = pd.array(np.tile(np.minimum(lengths, 512), len(pairs)), dtype="Int64")
    adapters = [{"label": x, "spec": x, "config": {"max_length": 512}} for x in labels]
    summary = build_summary(comparison, adapters, model="m", n_texts=n, frame=frame)
    page = render_html(summary, frame)
    size = len(page.encode("utf-8"))
    # plotly.js (~4.7 MB) + the sampled figures: 9.2 MB when each pair had 1,500 dots a side
    # and 60-character hover texts (7 pairs passed 10 MB); the budget holds for any pair count
    assert 4_000_000 < size < 7_500_000, size
    print(f"report.html: {size} bytes")
    dots = re.findall(r'"mode":"markers"', page)
    assert len(dots) == 12  # one dot trace per side of each of the 6 pairs
    hovers = re.findall(r'"#[0-9]+ ', page)  # a dot's hover text starts with its text_id
    assert len(hovers) == 2 * (SCATTER_BUDGET // 6) * 6 <= 2 * SCATTER_BUDGET
    assert "FAIL: 6 of 6 pairs differ beyond tolerance" in page


def test_truncation_is_a_step_in_the_metric_against_token_count() -> None:
    _, frame = _truncating_comparison(3_000)
    figure = length_figure(frame, {"euclidean": 5e-3}, {"st": {}, "bce": {}})
    assert figure is not None
    step_b = next(t for t in figure.data if t.name == "max at each token count of bce")
    x, y = np.asarray(step_b.x), np.asarray(step_b.y)
    assert y[x <= 256].max() < 1e-5 < 1e-2 < y[x > 256].min()  # the step sits at 256 tokens
    dots = [t for t in figure.data if t.mode == "markers"]
    assert all(len(t.x) == min(len(frame), SCATTER_BUDGET) for t in dots)


def test_whitespace_zero_width_and_non_ascii_are_made_visible() -> None:
    shown = visible("a b\n\tc\u200bé<x>")
    assert '<span class="ws">·</span>' in shown
    assert '<span class="ws">↵</span><br>' in shown
    assert '<span class="ws">⇥</span>' in shown
    assert '<span class="zw">U+200B</span>' in shown
    assert visible("a\u00a0b") == 'a<span class="zw">U+00A0</span>b'  # a space that is not one
    assert '<span class="na" title="LATIN SMALL LETTER E WITH ACUTE">é</span>' in shown
    assert "&lt;x&gt;" in shown and "<x>" not in shown
    assert visible("x" * 500, limit=10).endswith("… (490 more characters)</span>")


def test_token_diff_marks_what_only_one_side_has_and_folds_equal_runs() -> None:
    diff = token_diff(["a", "b", "c"], ["a", "x", "c"])
    assert '<del class="tok">b</del> <ins class="tok">x</ins>' in diff
    long_a = [f"t{i}" for i in range(40)]
    folded = token_diff(long_a, long_a[:30])
    assert "… 18 equal tokens …" in folded  # 30 equal, 6 shown each side
    assert folded.count("<del") == 10


def test_the_same_worst_texts_are_shown_once_in_both_reports() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 8))
    b = a + 0.1
    texts = ["w", "x", "y", "z"]
    pairs = [compare_pair("st", a, "bce", b, texts), compare_pair("custom", a, "bce", b, texts)]
    comparison = Comparison(pairs, Tolerance())
    frame = results_frame(comparison)
    summary = _summary(comparison, frame)
    summary["adapters"].append({"label": "custom", "spec": "custom", "config": {}})
    markdown = render_markdown(summary)
    assert markdown.count("| # | text |") == 1
    assert "the same 4 texts with the same deltas as under st vs bce" in markdown
    page = render_html(summary, frame)
    assert page.count("<h3>Worst texts") == 1
    assert 'same deltas as under <a href="#st vs bce">st vs bce</a>' in page


def test_markdown_shows_the_smallest_passing_tolerance_the_cause_and_counts_in_words() -> None:
    comparison, frame = _truncating_comparison(40)
    summary = _summary(comparison, frame)
    cause = {
        "cause": "truncation",
        "also": [],
        "stage": "input_ids",
        "detail": "bce truncates at 512 tokens, st at 256.",
        "explained": 1,
        "fix": "set max_length=256 on bce",
        "evidence": "measured",
        "indices": [summary["pairs"][0]["worst"][0]["index"]],
    }
    summary["pairs"][0]["causes"] = [cause]
    markdown = render_markdown(summary)
    least = summary["pairs"][0]["min_tolerance"]["euclidean"]
    assert "| smallest tolerance that passes |" in markdown
    assert f"| 0.005 | {least:.3g} |" in markdown
    assert "(1 text, stage input_ids)" in markdown and "1 texts" not in markdown
    assert "| over tolerance | cause |" in markdown
    assert "| max_abs, cosine, euclidean | truncation |" in markdown
    assert "- texts: 40 texts compared text by text\n" in markdown
    summary["pairs"][0]["retrieval"] = {"per_query": [{}] * 24}
    assert texts_line(summary).startswith(
        "40 texts compared text by text; the built-in retrieval set (24 queries and their "
        "documents) was embedded in the same calls"
    )


def test_gate_and_retrieval_sections_show_the_environment_diff_and_ranking() -> None:
    comparison, frame = _truncating_comparison(20)
    retrieval = {
        "ndcg@10": {"a": 0.81, "b": 0.84, "diff": 0.03},
        "ndcg@10_long_docs": {"a": 0.21, "b": 0.24, "diff": 0.03},
        "top10_overlap": 0.9,
        "kendall_tau": 0.7,
        "score_delta": {"cosine": {"max": 0.12}},
    }
    baseline = {
        "path": "fixtures/baselines/minilm",
        "created": "2026-11-01",
        "tool_version": "0.1.0",
        "passed": False,
        "adapters": {
            "bce": {"baseline_adapter": "bce", "drifted": True, "failures": 5, "n": 20}
            | {"max_abs": 0.07}
        },
        "drifted": ["bce"],
        "environment_diff": ["transformers 4.46.0 -> 5.24.0"],
        "newly_failing_pairs": [],
        "ndcg_failures": [],
    }
    summary = _summary(comparison, frame, baseline=baseline)
    summary["pairs"][0]["retrieval"] = retrieval
    page = render_html(summary, frame, title="parity gate")
    assert 'id="verdict" class="fail">FAIL: drifted: bce</p>' in page
    assert "<li>transformers 4.46.0 -&gt; 5.24.0</li>" in page
    assert "DRIFTED" in page and "5/20" in page
    assert "<h2>Retrieval impact</h2>" in page
    assert '<td class="num">0.81</td><td class="num">0.84</td><td class="num">0.03</td>' in page
