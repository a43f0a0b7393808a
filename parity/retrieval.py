"""Retrieval impact: do two sides' embeddings rank the built-in bilingual retrieval set alike?

Pure numpy, no torch import. Scores and metrics are computed in float64.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from parity.errors import ComparisonError, ParityInputError

SCORE_METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean")
DATA_FILE = "data/retrieval.json"


@dataclass(frozen=True)
class RetrievalSet:
    """Queries, documents and graded relevance (qrels[query_id][doc_id] = 1 or 2; unlisted = 0)."""

    queries: list[str]
    query_ids: list[str]
    documents: list[str]
    doc_ids: list[str]
    qrels: dict[str, dict[str, int]]
    doc_kinds: list[str] = field(default_factory=list)
    query_langs: list[str] = field(default_factory=list)
    doc_langs: list[str] = field(default_factory=list)
    name: str = "custom"
    version: int = 0

    def __post_init__(self) -> None:
        for texts, ids, what in (
            (self.queries, self.query_ids, "query"),
            (self.documents, self.doc_ids, "document"),
        ):
            if len(texts) != len(ids):
                raise ParityInputError(
                    f"{self.name}: {len(texts)} {what} texts but {len(ids)} {what} ids"
                )
            if len(set(ids)) != len(ids):
                raise ParityInputError(f"{self.name}: duplicate {what} ids")
        for values, what, expected in (
            (self.doc_kinds, "doc_kinds", len(self.documents)),
            (self.doc_langs, "doc_langs", len(self.documents)),
            (self.query_langs, "query_langs", len(self.queries)),
        ):
            if values and len(values) != expected:
                raise ParityInputError(
                    f"{self.name}: {what} has {len(values)} entries, expected {expected}"
                )
        known_queries, known_docs = set(self.query_ids), set(self.doc_ids)
        for query_id, judged in self.qrels.items():
            if query_id not in known_queries:
                raise ParityInputError(f"{self.name}: qrels name unknown query {query_id!r}")
            for doc_id, grade in judged.items():
                if doc_id not in known_docs:
                    raise ParityInputError(
                        f"{self.name}: qrels[{query_id!r}] names unknown document {doc_id!r}"
                    )
                if not isinstance(grade, int) or grade < 0:
                    raise ParityInputError(
                        f"{self.name}: qrels[{query_id!r}][{doc_id!r}] = {grade!r}; expected an integer >= 0"
                    )

    def all_texts(self) -> list[str]:
        """The texts to embed, in one batch: every query, then every document."""
        return [*self.queries, *self.documents]

    def split(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split a matrix embedded from `all_texts()` into (query_vectors, doc_vectors)."""
        expected = len(self.queries) + len(self.documents)
        if embeddings.ndim != 2 or embeddings.shape[0] != expected:
            raise ComparisonError(
                f"{self.name}: expected a ({expected}, dim) matrix embedded from all_texts(), got shape {embeddings.shape}"
            )
        return embeddings[: len(self.queries)], embeddings[len(self.queries) :]

    def long_doc_ids(self) -> set[str]:
        """Ids of documents of kind "long" (empty when kinds are unknown)."""
        if not self.doc_kinds:
            return set()
        return {
            doc_id
            for doc_id, kind in zip(self.doc_ids, self.doc_kinds, strict=True)
            if kind == "long"
        }


def load_retrieval_set() -> RetrievalSet:
    """The built-in English/Chinese retrieval set shipped in parity/data/retrieval.json."""
    data = json.loads(resources.files("parity").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    queries, documents = data["queries"], data["documents"]
    return RetrievalSet(
        queries=[q["text"] for q in queries],
        query_ids=[q["id"] for q in queries],
        documents=[d["text"] for d in documents],
        doc_ids=[d["id"] for d in documents],
        qrels={qid: dict(judged) for qid, judged in data["qrels"].items()},
        doc_kinds=[d["kind"] for d in documents],
        query_langs=[q["lang"] for q in queries],
        doc_langs=[d["lang"] for d in documents],
        name=data["name"],
        version=data["version"],
    )


def scores(q: np.ndarray, d: np.ndarray, metric: str) -> np.ndarray:
    """(n_queries, n_docs) relevance scores, higher is better: cosine, dot, or -||q - d||_2.

    A zero vector has cosine 0 to everything.
    """
    if metric not in SCORE_METRICS:
        raise ParityInputError(
            f"unknown score metric {metric!r}; choose from {', '.join(SCORE_METRICS)}"
        )
    q64, d64 = np.asarray(q, dtype=np.float64), np.asarray(d, dtype=np.float64)
    if q64.ndim != 2 or d64.ndim != 2 or q64.shape[1] != d64.shape[1]:
        raise ComparisonError(
            f"expected (n, dim) query and document matrices of one dim, got {q64.shape} and {d64.shape}"
        )
    if metric == "dot":
        return q64 @ d64.T
    if metric == "cosine":
        q_norm = np.linalg.norm(q64, axis=1, keepdims=True)
        d_norm = np.linalg.norm(d64, axis=1, keepdims=True)
        q_unit = q64 / np.where(q_norm == 0, 1.0, q_norm)
        d_unit = d64 / np.where(d_norm == 0, 1.0, d_norm)
        return q_unit @ d_unit.T
    # row by row rather than |q|^2 + |d|^2 - 2qd, which cancels badly for close vectors
    return -np.stack([np.linalg.norm(d64 - row, axis=1) for row in q64]).reshape(len(q64), len(d64))


def _top_k(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores; ties keep document order."""
    return np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")[:k]


def _dcg(gains: Sequence[float]) -> float:
    return float(sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains)))


def ndcg_at_k(
    scores_row: np.ndarray, doc_ids: Sequence[str], qrel: dict[str, int], k: int = 10
) -> float:
    """nDCG@k as trec_eval's ndcg_cut (and so MTEB/BEIR) computes it: linear gain (the grade),
    log2(rank + 1) discount, ideal DCG from every judged document of the query; 0 if none is
    relevant. Tied scores keep document order."""
    if len(scores_row) != len(doc_ids):
        raise ComparisonError(f"{len(scores_row)} scores for {len(doc_ids)} documents")
    ideal = _dcg(sorted((float(g) for g in qrel.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    ranked = [doc_ids[i] for i in _top_k(scores_row, k)]
    return _dcg([float(max(qrel.get(doc_id, 0), 0)) for doc_id in ranked]) / ideal


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors (ties allowed); NaN when either is constant.

    impact() passes only the documents either side ranks in its top k (top_k_tau)."""
    a64, b64 = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a64.shape != b64.shape:
        raise ComparisonError(f"kendall_tau: {a64.size} scores vs {b64.size}")
    upper = np.triu_indices(a64.size, k=1)
    sign_a = np.sign(a64[:, None] - a64[None, :])[upper]
    sign_b = np.sign(b64[:, None] - b64[None, :])[upper]
    untied_a, untied_b = np.count_nonzero(sign_a), np.count_nonzero(sign_b)
    if untied_a == 0 or untied_b == 0:
        return math.nan
    # concordant - discordant; pairs tied on either side contribute 0
    return float(np.sum(sign_a * sign_b) / math.sqrt(untied_a * untied_b))


def top_k_tau(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """kendall_tau over the union of both sides' top k: the ranks a reader sees, not the
    unranked tail (with 160 documents the tail's pairs would swamp the top 10's)."""
    if len(a) != len(b):
        raise ComparisonError(f"top_k_tau: {len(a)} scores vs {len(b)}")
    shown = np.union1d(_top_k(a, k), _top_k(b, k))
    return kendall_tau(np.asarray(a)[shown], np.asarray(b)[shown])


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """|topk(a) ∩ topk(b)| / k; k is capped at the number of scores."""
    if len(a) != len(b):
        raise ComparisonError(f"top_k_overlap: {len(a)} scores vs {len(b)}")
    if k < 1 or len(a) == 0:
        raise ParityInputError(f"top_k_overlap: need k >= 1 and some scores, got k={k}, {len(a)}")
    k = min(k, len(a))
    return len(set(_top_k(a, k).tolist()) & set(_top_k(b, k).tolist())) / k


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _side_summary(a: list[float], b: list[float]) -> dict[str, Any]:
    mean_a, mean_b = _mean(a), _mean(b)
    diff = None if mean_a is None or mean_b is None else mean_b - mean_a
    return {"a": mean_a, "b": mean_b, "diff": diff, "queries": len(a)}


def _check_sides(
    a_q: np.ndarray,
    a_d: np.ndarray,
    b_q: np.ndarray,
    b_d: np.ndarray,
    rset: RetrievalSet,
    k: int,
    rank_metric: str,
) -> None:
    if rank_metric not in SCORE_METRICS:
        raise ParityInputError(
            f"unknown rank_metric {rank_metric!r}; choose from {', '.join(SCORE_METRICS)}"
        )
    if k < 1:
        raise ParityInputError(f"impact: k must be >= 1, got {k}")
    for side, q, d in (("A", a_q, a_d), ("B", b_q, b_d)):
        if (
            q.ndim != 2
            or d.ndim != 2
            or q.shape[0] != len(rset.queries)
            or d.shape[0] != len(rset.documents)
        ):
            raise ComparisonError(
                f"side {side}: expected {len(rset.queries)} query and {len(rset.documents)} document vectors, "
                f"got shapes {q.shape} and {d.shape}; embed rset.all_texts() and rset.split() the result"
            )


def impact(
    a_q: np.ndarray,
    a_d: np.ndarray,
    b_q: np.ndarray,
    b_d: np.ndarray,
    rset: RetrievalSet,
    k: int = 10,
    *,
    rank_metric: str = "cosine",
) -> dict[str, Any]:
    """How far apart sides A and B score and rank `rset`; a JSON-ready dict of plain floats.

    Keys: score_delta (max/mean |s_A - s_B| per metric), top{k}_overlap, kendall_tau (over
    the union of each query's two top k),
    ndcg@{k} and ndcg@{k}_long (queries with a relevant long document) as {a, b, diff = b - a},
    ndcg@{k}_long_docs (only long documents count as relevant), per_query.
    Rankings use `rank_metric`.
    """
    _check_sides(a_q, a_d, b_q, b_d, rset, k, rank_metric)
    all_scores = {m: (scores(a_q, a_d, m), scores(b_q, b_d, m)) for m in SCORE_METRICS}
    score_delta: dict[str, dict[str, float]] = {}
    for metric, (sa, sb) in all_scores.items():
        delta = np.abs(sa - sb)
        score_delta[metric] = {"max": float(delta.max()), "mean": float(delta.mean())}
    rank_a, rank_b = all_scores[rank_metric]
    long_ids = rset.long_doc_ids()
    per_query: list[dict[str, Any]] = []
    ndcg: tuple[list[float], list[float]] = ([], [])
    ndcg_long: tuple[list[float], list[float]] = ([], [])
    ndcg_long_docs: tuple[list[float], list[float]] = ([], [])
    for i, query_id in enumerate(rset.query_ids):
        qrel = rset.qrels.get(query_id, {})
        ndcg_a = ndcg_at_k(rank_a[i], rset.doc_ids, qrel, k)
        ndcg_b = ndcg_at_k(rank_b[i], rset.doc_ids, qrel, k)
        ndcg[0].append(ndcg_a)
        ndcg[1].append(ndcg_b)
        long_qrel = {doc_id: g for doc_id, g in qrel.items() if doc_id in long_ids and g >= 1}
        if long_qrel:
            ndcg_long[0].append(ndcg_a)
            ndcg_long[1].append(ndcg_b)
            ndcg_long_docs[0].append(ndcg_at_k(rank_a[i], rset.doc_ids, long_qrel, k))
            ndcg_long_docs[1].append(ndcg_at_k(rank_b[i], rset.doc_ids, long_qrel, k))
        overlap, tau = top_k_overlap(rank_a[i], rank_b[i], k), top_k_tau(rank_a[i], rank_b[i], k)
        per_query.append(
            {"id": query_id, "ndcg_a": ndcg_a, "ndcg_b": ndcg_b, "overlap": overlap, "tau": tau}
        )
    return {
        "k": k,
        "rank_metric": rank_metric,
        "score_delta": score_delta,
        f"top{k}_overlap": _mean([row["overlap"] for row in per_query]),
        "kendall_tau": _mean([row["tau"] for row in per_query]),
        f"ndcg@{k}": _side_summary(*ndcg),
        f"ndcg@{k}_long": _side_summary(*ndcg_long),
        f"ndcg@{k}_long_docs": _side_summary(*ndcg_long_docs),
        "per_query": per_query,
    }


def ndcg_change(impact_dict: dict[str, Any]) -> float | None:
    """B's overall nDCG@k minus A's (negative: B ranks worse); None when no query is judged."""
    diff = impact_dict[f"ndcg@{impact_dict.get('k', 10)}"]["diff"]
    return None if diff is None else float(diff)


def ndcg_drop_exceeds(impact_dict: dict[str, Any], max_drop: float) -> bool:
    """True when B's overall nDCG@k is lower than A's by more than max_drop; a gain never fails."""
    diff = ndcg_change(impact_dict)
    return diff is not None and -diff > max_drop


def pair_impact(rset: RetrievalSet, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """impact() of two matrices embedded from `rset.all_texts()`."""
    a_q, a_d = rset.split(a)
    b_q, b_d = rset.split(b)
    return impact(a_q, a_d, b_q, b_d, rset)
