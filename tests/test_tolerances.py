"""Tolerances that mean something: which metric decided each failure, and rel_euclidean."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity.compare import Comparison, compare_pair, metric_lines
from parity.errors import ParityInputError
from parity.metrics import Tolerance, deltas
from parity.report.markdown import render_markdown
from parity.report.summary import build_summary


def _summary(pairs: list, tolerance: Tolerance) -> dict:
    adapters = [{"label": label, "config": {}} for label in ("a", "b")]
    return build_summary(Comparison(pairs, tolerance), adapters, model="m", n_texts=pairs[0].n)


def test_rel_euclidean_is_the_distance_over_the_first_sides_norm() -> None:
    a = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([[3.0, 4.5], [0.0, 0.0], [1.0, 0.0]])
    d = deltas(a, b)
    assert d["rel_euclidean"][0] == pytest.approx(0.5 / 5.0)
    assert d["rel_euclidean"][1] == 0.0  # zero against zero
    assert math.isinf(d["rel_euclidean"][2])  # zero against anything else


def test_parse_accepts_rel_euclidean_and_off() -> None:
    tol = Tolerance.parse("rel_euclidean=1e-2")
    assert tol.as_dict() == {
        "max_abs": 5e-3,
        "cosine": 5e-3,
        "euclidean": 5e-3,
        "rel_euclidean": 1e-2,
    }
    # a bare value sets the three absolute metrics and leaves rel_euclidean off
    assert Tolerance.parse("1e-4").as_dict() == {"max_abs": 1e-4, "cosine": 1e-4, "euclidean": 1e-4}
    only_relative = Tolerance.parse("rel_euclidean=1e-3,max_abs=off,euclidean=off,cosine=off")
    assert only_relative.as_dict() == {"rel_euclidean": 1e-3}
    with pytest.raises(ParityInputError, match="choose from max_abs, cosine, euclidean, rel_eucl"):
        Tolerance.parse("relative=1")


def test_recorded_tolerances_round_trip_and_an_old_record_keeps_rel_euclidean_off() -> None:
    old_baseline = {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 1e-2}
    assert Tolerance.from_dict(old_baseline) == Tolerance(euclidean=1e-2)
    for tol in (Tolerance(), Tolerance.parse("rel_euclidean=1e-3,euclidean=off")):
        assert Tolerance.from_dict(json.loads(json.dumps(tol.as_dict()))) == tol
    assert Tolerance.from_dict(None) == Tolerance()  # nothing recorded: the defaults


def test_rel_euclidean_passes_a_long_vector_the_absolute_metrics_fail() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 64)) * 10  # norm ~80: a model that does not normalize
    b = a * (1 + 1e-4)  # 0.01 % longer: Euclidean ~8e-3, rel_euclidean 1e-4
    assert not compare_pair("a", a, "b", b, list("wxyz"))
    relative = Tolerance.parse("rel_euclidean=1e-3,max_abs=off,euclidean=off")
    pair = compare_pair("a", a, "b", b, list("wxyz"), relative)
    assert pair
    assert pair.per_text["rel_euclidean"] == pytest.approx(np.full(4, 1e-4))
    assert compare_pair("a", a, "b", b * 1.01, list("wxyz"), relative).decided_by() == {
        "cosine": 0,
        "rel_euclidean": 4,
        "non-finite": 0,
    }


def test_decided_by_and_failed_metrics_name_the_metric_over_its_tolerance() -> None:
    a = np.ones((4, 100))
    b = a.copy()
    b[0] = 1.001  # parallel: max_abs 1e-3, cosine 0, Euclidean 1e-2 -> euclidean only
    b[1, 0] = 1.01  # one coordinate: max_abs and Euclidean 1e-2
    b[2, 0] = np.nan  # non-finite
    pair = compare_pair("a", a, "b", b, ["t0", "t1", "t2", "t3"])
    assert pair.failures == 3
    assert pair.decided_by() == {"max_abs": 1, "cosine": 0, "euclidean": 2, "non-finite": 1}
    failed = {w.index: w.failed_metrics for w in pair.worst()}
    assert failed == {0: ["euclidean"], 1: ["max_abs", "euclidean"], 2: ["non-finite"], 3: []}
    summary = _summary([pair], pair.tolerance)
    entry = summary["pairs"][0]
    assert entry["decided_by"] == {"max_abs": 1, "cosine": 0, "euclidean": 2, "non-finite": 1}
    by_index = {w["index"]: w for w in entry["worst"]}
    assert by_index[1]["failed_metrics"] == ["max_abs", "euclidean"]
    assert by_index[2]["reasons"] == ["non-finite values (NaN or Inf) in an embedding from b"]
    assert set(entry["stats"]) == {"max_abs", "cosine", "euclidean", "rel_euclidean"}
    assert summary["tolerance"] == {"max_abs": 5e-3, "cosine": 5e-3, "euclidean": 5e-3}
    report = render_markdown(summary)
    assert "| a vs b | **FAIL** | 3/4 | max_abs 1, euclidean 2, non-finite 1 |" in report
    assert "rel_euclidean off" in report


def test_on_unit_vectors_euclidean_decides_with_equal_tolerances() -> None:
    """max_abs <= Euclidean and cosine distance = Euclidean^2 / 2, as the README says."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 32))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a + rng.normal(size=a.shape) * rng.uniform(1e-5, 1e-2, size=(200, 1))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    d = deltas(a, b)
    assert (d["max_abs"] <= d["euclidean"]).all()
    assert d["cosine"] == pytest.approx(d["euclidean"] ** 2 / 2, abs=1e-12)
    pair = compare_pair("a", a, "b", b, [str(i) for i in range(200)])
    counts = pair.decided_by()
    assert 0 < counts["euclidean"] == pair.failures
    assert counts["cosine"] == 0


def test_metric_lines_show_only_metrics_in_force() -> None:
    pair = compare_pair("a", np.ones((1, 4)), "b", np.ones((1, 4)) * 2, ["t"])
    lines = metric_lines(pair.delta(0), Tolerance.parse("rel_euclidean=0.5,cosine=off"))
    assert [line.split()[0] for line in lines] == ["max_abs", "euclidean", "rel_euclidean"]
    assert lines[-1].endswith("tolerance 0.5  FAIL")  # rel_euclidean 1 > 0.5
