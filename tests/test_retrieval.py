"""Retrieval metrics against hand-computed values; impact() on random vectors, not a model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity.errors import ComparisonError, ParityInputError
from parity.retrieval import (
    RetrievalSet,
    impact,
    kendall_tau,
    load_retrieval_set,
    ndcg_at_k,
    ndcg_change,
    ndcg_drop_exceeds,
    scores,
    top_k_overlap,
    top_k_tau,
)

DIM = 32


@pytest.fixture(scope="module")
def rset() -> RetrievalSet:
    return load_retrieval_set()


def _random_sides(rset: RetrievalSet, noise: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((len(rset.all_texts()), DIM))
    b = a + noise * rng.standard_normal(a.shape)
    return (*rset.split(a), *rset.split(b))


# --- the built-in set ---


def test_builtin_set_is_bilingual_and_every_qrel_id_exists(rset: RetrievalSet) -> None:
    assert len(rset.queries) >= 30
    assert len(rset.documents) >= 150
    assert set(rset.query_langs) == {"en", "zh"}
    assert set(rset.doc_langs) == {"en", "zh"}
    assert set(rset.qrels) <= set(rset.query_ids)
    judged = {doc_id for qrel in rset.qrels.values() for doc_id in qrel}
    assert judged <= set(rset.doc_ids)
    grades = {g for qrel in rset.qrels.values() for g in qrel.values()}
    assert grades == {1, 2}
    assert "long" in rset.doc_kinds


def test_all_texts_puts_queries_first_and_split_inverts_it(rset: RetrievalSet) -> None:
    texts = rset.all_texts()
    assert texts[0] == rset.queries[0]
    assert texts[len(rset.queries)] == rset.documents[0]
    matrix = np.arange(len(texts), dtype=np.float64)[:, None] * np.ones((1, 3))
    q, d = rset.split(matrix)
    assert q.shape == (len(rset.queries), 3)
    assert d.shape == (len(rset.documents), 3)
    assert d[0, 0] == len(rset.queries)
    with pytest.raises(ComparisonError, match=r"expected a \(192, dim\) matrix"):
        rset.split(matrix[:-1])


def test_qrel_naming_an_unknown_document_is_rejected() -> None:
    with pytest.raises(ParityInputError, match="qrels\\['q1'\\] names unknown document 'd9'"):
        RetrievalSet(["q"], ["q1"], ["d"], ["d1"], {"q1": {"d9": 1}})


# --- scores ---


def test_scores_for_tiny_vectors_match_hand_values() -> None:
    q = np.array([[1.0, 0.0]])
    d = np.array([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(scores(q, d, "cosine"), [[0.6, 0.0]])
    np.testing.assert_allclose(scores(q, d, "dot"), [[3.0, 0.0]])
    # -||q - d||: (1,0)-(3,4) -> sqrt(4 + 16); (1,0)-(0,2) -> sqrt(1 + 4)
    np.testing.assert_allclose(scores(q, d, "euclidean"), [[-math.sqrt(20), -math.sqrt(5)]])


def test_scores_shape_is_queries_by_documents_and_float64() -> None:
    q = np.ones((2, 4), dtype=np.float32)
    d = np.eye(4, dtype=np.float32)[:3]
    result = scores(q, d, "euclidean")
    assert result.shape == (2, 3)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, -math.sqrt(3))


def test_unknown_score_metric_names_the_choices() -> None:
    with pytest.raises(ParityInputError, match="'manhattan'; choose from cosine, dot, euclidean"):
        scores(np.ones((1, 2)), np.ones((1, 2)), "manhattan")


# --- nDCG ---


def test_ndcg_of_a_perfect_ranking_is_one() -> None:
    qrel = {"d1": 2, "d2": 1, "d3": 1}
    assert ndcg_at_k(np.array([0.1, 0.9, 0.5, 0.4]), ["d0", "d1", "d2", "d3"], qrel) == 1.0


def test_ndcg_of_a_three_document_ranking_matches_hand_value() -> None:
    # trec_eval's linear gain: x (grade 0), y (grade 2, gain 2), z (grade 1, gain 1)
    row, ids, qrel = np.array([0.9, 0.8, 0.7]), ["x", "y", "z"], {"y": 2, "z": 1}
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(row, ids, qrel) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(row, ids, qrel) == pytest.approx(0.6697, abs=1e-4)  # 0.659 with 2**g - 1
    # cut at 2: z drops out of the DCG, the ideal keeps both relevant documents
    assert ndcg_at_k(row, ids, qrel, k=2) == pytest.approx((2 / math.log2(3)) / ideal)
    assert ndcg_at_k(row, ids, qrel, k=1) == 0.0


def test_ndcg_ideal_comes_from_qrels_even_for_documents_not_scored() -> None:
    # "w" (grade 2, gain 2) is relevant but not scored: the ideal is w then y, the DCG only y
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(np.array([1.0, 0.0]), ["y", "z"], {"y": 1, "w": 2}) == pytest.approx(1 / ideal)


# ranx 0.3.21 `evaluate(qrels, run, "ndcg@10")` (Jarvelin-Kekalainen linear gain, trec_eval's
# ndcg_cut_10) on these three queries over 14 documents, distinct scores; recorded once because
# ranx pulls numba, too heavy a test dependency. test_ndcg_matches_ranx_live reruns it if present.
RANX_DOCS = [f"d{i:02d}" for i in range(14)]
RANX_QRELS = {
    "q1": {"d03": 3, "d07": 2, "d11": 1, "d00": 0, "d13": 2},
    "q2": {"d01": 1, "d02": 1, "d05": 2},
    "q3": {"d09": 3, "d10": 1, "d04": 2, "d12": 1, "d06": 1, "d08": 2, "d00": 1, "d01": 1,
           "d02": 1, "d05": 2, "d13": 3},
}  # fmt: skip
RANX_SCORES = {
    "q1": [0.230769, 0.923077, 0.615385, 0.461538, 0.538462, 0.0, 0.307692, 0.076923, 1.0,
           0.769231, 0.153846, 0.384615, 0.692308, 0.846154],
    "q2": [0.625385, 0.471538, 0.779231, 0.317692, 1.01, 0.548462, 0.856154, 0.240769, 0.702308,
           0.086923, 0.933077, 0.01, 0.163846, 0.394615],
    "q3": [0.558462, 0.173846, 1.02, 0.02, 0.635385, 0.789231, 0.481538, 0.327692, 0.866154,
           0.404615, 0.096923, 0.943077, 0.712308, 0.250769],
}  # fmt: skip
RANX_NDCG10 = {"q1": 0.3948020004218925, "q2": 0.45124235058745576, "q3": 0.60424638696733}


def test_ndcg_matches_ranx_and_trec_eval_values() -> None:
    for query_id, expected in RANX_NDCG10.items():
        row = np.array(RANX_SCORES[query_id])
        assert ndcg_at_k(row, RANX_DOCS, RANX_QRELS[query_id]) == pytest.approx(expected, abs=1e-12)
    # q3 has 11 judged documents: the ideal DCG is cut at 10 (3, 3, 2, 2, 2, 1, ...)
    assert len([g for g in RANX_QRELS["q3"].values() if g > 0]) == 11


def test_ndcg_matches_ranx_live() -> None:
    ranx = pytest.importorskip("ranx")
    qrels = ranx.Qrels({q: {d: g for d, g in j.items() if g > 0} for q, j in RANX_QRELS.items()})
    run = ranx.Run(
        {q: dict(zip(RANX_DOCS, map(float, s), strict=True)) for q, s in RANX_SCORES.items()}
    )
    ours = np.mean(
        [ndcg_at_k(np.array(RANX_SCORES[q]), RANX_DOCS, RANX_QRELS[q]) for q in RANX_QRELS]
    )
    assert ours == pytest.approx(ranx.evaluate(qrels, run, "ndcg@10"), abs=1e-12)


def test_ndcg_without_relevant_documents_is_zero() -> None:
    assert ndcg_at_k(np.array([0.3, 0.2]), ["a", "b"], {}) == 0.0
    assert ndcg_at_k(np.array([0.3, 0.2]), ["a", "b"], {"a": 0}) == 0.0


# --- Kendall tau-b ---


def test_kendall_tau_of_identical_and_reversed_scores() -> None:
    scores_row = np.array([0.3, 0.1, 0.9, 0.5, 0.7])
    assert kendall_tau(scores_row, scores_row) == pytest.approx(1.0)
    assert kendall_tau(scores_row, -scores_row) == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties_matches_hand_value() -> None:
    # pairs: (0,1) (0,2) (0,3) concordant, (1,3) discordant, (1,2) tied in a, (2,3) tied in b
    # tau_b = (3 - 1) / sqrt((6 - 1) * (6 - 1)) = 0.4
    assert kendall_tau(np.array([1, 2, 2, 3]), np.array([1, 3, 2, 2])) == pytest.approx(0.4)
    # a pair tied on both sides is left out of both denominators: 2 / sqrt(2 * 2)
    assert kendall_tau(np.array([1, 1, 2]), np.array([1, 1, 3])) == pytest.approx(1.0)
    # tau-a would give 2/3 here: one of three pairs is tied in a only
    assert kendall_tau(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(2 / math.sqrt(6))


def test_top_k_tau_ignores_the_unranked_tail() -> None:
    # the top 3 agree exactly; the 96 documents below them are shuffled on side B
    a = np.arange(100, 0, -1, dtype=float)
    b = a.copy()
    b[4:] = np.random.default_rng(1).permutation(a[4:])
    assert top_k_tau(a, b, k=3) == pytest.approx(1.0)
    assert abs(kendall_tau(a, b)) < 0.5  # over all 100 documents the tail decides
    # B lifts document 3 into its top 3: the union is documents 0-3, one pair of six swapped
    b[3] = 98.5
    assert top_k_tau(a, b, k=3) == pytest.approx((5 - 1) / 6)


def test_kendall_tau_of_a_constant_vector_is_nan() -> None:
    assert math.isnan(kendall_tau(np.ones(4), np.arange(4)))


# --- top-k overlap ---


def test_top_k_overlap_known_values() -> None:
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = a[::-1].copy()
    assert top_k_overlap(a, b, k=2) == 0.0
    assert top_k_overlap(a, b, k=3) == pytest.approx(1 / 3)
    assert top_k_overlap(a, b, k=5) == 1.0
    assert top_k_overlap(a, np.array([5.0, 1.0, 4.0, 2.0, 3.0]), k=2) == 0.5
    # k beyond the number of documents is capped
    assert top_k_overlap(a, b, k=10) == 1.0


# --- impact ---


def test_impact_of_identical_embeddings_is_zero_everywhere(rset: RetrievalSet) -> None:
    a_q, a_d, _, _ = _random_sides(rset, noise=0.0)
    result = impact(a_q, a_d, a_q.copy(), a_d.copy(), rset)
    for metric in ("cosine", "dot", "euclidean"):
        assert result["score_delta"][metric] == {"max": 0.0, "mean": 0.0}
    assert result["top10_overlap"] == 1.0
    assert result["kendall_tau"] == pytest.approx(1.0)
    assert result["ndcg@10"]["diff"] == 0.0
    assert result["ndcg@10"]["a"] == result["ndcg@10"]["b"]
    assert len(result["per_query"]) == len(rset.queries)
    assert not ndcg_drop_exceeds(result, 0.0)
    json.dumps(result, allow_nan=False)


def test_impact_of_perturbed_embeddings_reports_the_score_deltas(rset: RetrievalSet) -> None:
    a_q, a_d, b_q, b_d = _random_sides(rset, noise=0.05)
    result = impact(a_q, a_d, b_q, b_d, rset)
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a_q, a_d, b_q, b_d)]
    cosine_delta = np.abs(unit[0] @ unit[1].T - unit[2] @ unit[3].T)
    assert result["score_delta"]["cosine"]["max"] == pytest.approx(cosine_delta.max())
    assert result["score_delta"]["cosine"]["mean"] == pytest.approx(cosine_delta.mean())
    dot_delta = np.abs(a_q @ a_d.T - b_q @ b_d.T)
    assert result["score_delta"]["dot"]["max"] == pytest.approx(dot_delta.max())
    euclidean_delta = abs(np.linalg.norm(a_q[3] - a_d[7]) - np.linalg.norm(b_q[3] - b_d[7]))
    assert 0 < euclidean_delta <= result["score_delta"]["euclidean"]["max"]
    assert (
        0 < result["score_delta"]["euclidean"]["mean"] < result["score_delta"]["euclidean"]["max"]
    )
    assert 0.5 < result["kendall_tau"] < 1.0
    assert 0.5 < result["top10_overlap"] < 1.0
    first = result["per_query"][0]
    assert first["tau"] == pytest.approx(
        top_k_tau(unit[0][0] @ unit[1].T, unit[2][0] @ unit[3].T, 10)
    )
    assert set(first) == {"id", "ndcg_a", "ndcg_b", "overlap", "tau"}
    json.dumps(result, allow_nan=False)


def test_impact_ndcg_of_a_side_ranking_by_grade_is_one(rset: RetrievalSet) -> None:
    a_q, a_d, _, _ = _random_sides(rset, noise=0.0)
    # B: one axis per document, each query points at its relevant documents in grade order
    b_d = np.eye(len(rset.documents))
    b_q = np.zeros((len(rset.queries), len(rset.documents)))
    for i, query_id in enumerate(rset.query_ids):
        for doc_id, grade in rset.qrels.get(query_id, {}).items():
            b_q[i, rset.doc_ids.index(doc_id)] = grade
    result = impact(a_q, a_d, b_q, b_d, rset)
    ndcg = result["ndcg@10"]
    assert ndcg["b"] == pytest.approx(1.0)
    assert ndcg["a"] < 0.5  # random vectors rank near chance
    assert ndcg["diff"] == pytest.approx(1.0 - ndcg["a"])
    expected_a = np.mean(
        [
            ndcg_at_k(
                a_q[i] @ a_d.T / np.linalg.norm(a_q[i]) / np.linalg.norm(a_d, axis=1),
                rset.doc_ids,
                rset.qrels[qid],
            )
            for i, qid in enumerate(rset.query_ids)
        ]
    )
    assert ndcg["a"] == pytest.approx(expected_a)
    # B ranks better than A: a gain, which never fails; the other way round it is a drop
    assert ndcg_change(result) == pytest.approx(1.0 - ndcg["a"])
    assert not ndcg_drop_exceeds(result, 0.1)
    reverse = impact(b_q, b_d, a_q, a_d, rset)
    assert ndcg_drop_exceeds(reverse, 0.1)
    assert not ndcg_drop_exceeds(reverse, 1.0)


def test_impact_long_subsets_cover_queries_with_a_relevant_long_document(
    rset: RetrievalSet,
) -> None:
    long_ids = {i for i, kind in zip(rset.doc_ids, rset.doc_kinds, strict=True) if kind == "long"}
    with_long = [q for q in rset.query_ids if long_ids & set(rset.qrels.get(q, {}))]
    a_q, a_d, b_q, b_d = _random_sides(rset, noise=0.05)
    result = impact(a_q, a_d, b_q, b_d, rset, k=5)
    assert result["ndcg@5_long"]["queries"] == len(with_long)
    assert result["ndcg@5_long_docs"]["queries"] == len(with_long)
    per_query = {row["id"]: row for row in result["per_query"]}
    expected_b = np.mean([per_query[q]["ndcg_b"] for q in with_long])
    assert result["ndcg@5_long"]["b"] == pytest.approx(expected_b)
    assert "top5_overlap" in result


def test_impact_of_a_custom_set_without_long_documents_reports_none() -> None:
    small = RetrievalSet(["q"], ["q1"], ["x", "y"], ["d1", "d2"], {"q1": {"d2": 1}})
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])  # q, d1, d2
    q, d = small.split(vectors)
    result = impact(q, d, q, d, small)
    assert result["ndcg@10_long"] == {"a": None, "b": None, "diff": None, "queries": 0}
    # d1 (cosine 1) ranks above the relevant d2 (cosine 0.6): DCG = 1 / log2(3), ideal = 1
    assert result["ndcg@10"]["a"] == pytest.approx(1 / math.log2(3))


def test_impact_rejects_vectors_not_split_from_the_set(rset: RetrievalSet) -> None:
    a_q, a_d, b_q, b_d = _random_sides(rset, noise=0.0)
    with pytest.raises(ComparisonError, match="side B: expected 32 query and 160 document"):
        impact(a_q, a_d, b_q, b_d[:-1], rset)
