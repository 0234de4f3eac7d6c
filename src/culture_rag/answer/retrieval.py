"""Hybrid retrieval: dense (FAISS) and keyword (BM25) lists fused by reciprocal rank fusion,
with near-duplicate passages suppressed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from culture_rag.errors import PaperNotFoundError
from culture_rag.ingest.chunking import ABSTRACT_PASSAGE, REFERENCE_PASSAGE
from culture_rag.types import Hit

if TYPE_CHECKING:  # searching needs no storage code: only the types of what it searches
    from culture_rag.index import Snapshot


# A bibliography shares a question's words without answering it, and an abstract restates what
# the body says in full: the body's own passage ranks first when both match as well (a paper's
# structure brings its abstract back for the questions it answers). Figure text and page
# furniture are left alone: in a PDF of tables or a numbered transcript they are what it holds.
# Weights by chunking.passage_kind, which the index keeps per row: ranking reads no chunk.
PRIORS = np.ones(256, np.float64)
PRIORS[REFERENCE_PASSAGE] = 0.5
PRIORS[ABSTRACT_PASSAGE] = 0.9


@dataclass(frozen=True)
class RetrievalConfig:
    k: int
    candidates: int
    rrf_k: int
    duplicate_cosine: float
    use_dense: bool = True
    use_keyword: bool = True
    papers: frozenset[str] | None = None  # paper ids to search within; None: the whole index


def retrieve(snapshot: Snapshot, query: str, query_vector: np.ndarray, config: RetrievalConfig) -> list[Hit]:
    if snapshot.size == 0:
        return []
    rows = paper_rows(snapshot, config.papers) if config.papers is not None else None
    size = snapshot.size if rows is None else sum(b - a for a, b in rows)
    if size == 0:
        return []
    n = min(max(config.candidates, config.k), size)
    hybrid = getattr(snapshot, "hybrid_search", None)
    hybrid_used = hybrid is not None and config.use_dense and config.use_keyword
    if hybrid_used:  # a store that fuses on its side (Milvus); ranks are not reported
        fused = dict(hybrid(query, query_vector, n, config.rrf_k, rows))
        dense_rows, dense_scores, keyword_rows = [], {}, []
    else:
        dense_rows, dense_scores = _dense(snapshot, query_vector, n, rows) if config.use_dense else ([], {})
        keyword_rows = _keyword(snapshot, query, n, rows) if config.use_keyword else []
        fused = {}
        for ranked in (dense_rows, keyword_rows):
            for rank, row in enumerate(ranked, start=1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (config.rrf_k + rank)
    if fused:
        candidates = list(fused)
        for row, prior in zip(candidates, PRIORS[snapshot.kinds(candidates)]):
            fused[row] *= float(prior)
    order = sorted(fused, key=lambda r: (-fused[r], r))
    dense_rank = {row: i for i, row in enumerate(dense_rows, start=1)}
    keyword_rank = {row: i for i, row in enumerate(keyword_rows, start=1)}
    kept = _suppress_duplicates(snapshot, order, config.k, config.duplicate_cosine)
    return [
        Hit(
            chunk=snapshot.chunks[row],
            paper=snapshot.paper_of(row),
            score=fused[row],
            dense_rank=dense_rank.get(row),
            keyword_rank=keyword_rank.get(row),
            # a store that fused on its side reports no dense scores: the cosine is the vectors'
            dense_score=dense_scores.get(row, float(snapshot.chunk_vector(row) @ query_vector) if hybrid_used else None),
            sentence_vectors=snapshot.sentence_matrix(row),
        )
        for row in kept
    ]


def paper_rows(snapshot: Snapshot, papers: Iterable[str]) -> list[tuple[int, int]]:
    """The [start, stop) chunk rows of each paper in `papers`, in index order. An id that is
    not in the index raises PaperNotFoundError naming it."""
    wanted = set(papers)
    where = snapshot.rows()
    missing = sorted(wanted - where.keys())
    if missing:
        raise PaperNotFoundError(missing[0])
    return sorted((where[p][1], where[p][2]) for p in wanted)


def _dense(snapshot: Snapshot, query_vector: np.ndarray, n: int, rows=None) -> tuple[list[int], dict[int, float]]:
    found, scores = snapshot.dense_search(query_vector, n, rows)
    return found, dict(zip(found, scores))


def _keyword(snapshot: Snapshot, query: str, n: int, rows=None) -> list[int]:
    if snapshot.keyword is None:
        return []
    return [int(r) for r in snapshot.keyword.search(query, n, rows).rows]


def _suppress_duplicates(snapshot: Snapshot, order: list[int], k: int, threshold: float) -> list[int]:
    """Walk the fused list best first and skip passages nearly identical to one already kept
    (the same paragraph in two files, or a paper indexed twice under two names)."""
    kept: list[int] = []
    kept_vectors: list[np.ndarray] = []
    for row in order:
        vector = snapshot.chunk_vector(int(row))
        if any(float(vector @ other) >= threshold for other in kept_vectors):
            continue
        kept.append(row)
        kept_vectors.append(vector)
        if len(kept) == k:
            break
    return kept
