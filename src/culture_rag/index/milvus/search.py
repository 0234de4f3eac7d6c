"""Searching a generation of a Milvus store: dense, BM25 and the two fused by Milvus's RRF, each
within the generation's rows (a scope filter), with hits mapped back to the generation's rows;
and the keyword statistics questions read (document frequencies by text-match counts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from culture_rag.index.lexical import KeywordHits
from culture_rag.index.milvus.client import TOP_MAX, MilvusConnection
from culture_rag.index.milvus.schema import keyword_text, keyword_token

Found = list[tuple[int, float, dict]]  # (row, score, entity) of hits, best first


class Searched(Protocol):
    """What a search needs of the generation it searches (milvus.snapshot.MilvusSnapshot)."""

    store: MilvusConnection
    collection: str
    generation: int

    @property
    def size(self) -> int: ...

    def scope_filter(self, rows: Sequence[tuple[int, int]] | None) -> str: ...

    def row_of(self, segment: str, ordinal: int, allowed: list[tuple[int, int]] | None) -> int | None: ...

    def remember(self, found: Found) -> None: ...


def searched(snap: Searched, search: Callable[[int], list], k: int, rows: Sequence[tuple[int, int]] | None) -> Found:
    """(row, score, entity) of the k best hits of `search(limit)`, best first. Hits on rows
    this generation dropped (a write's collection still running) are skipped, asking for
    more when they left fewer than k."""
    allowed = [(int(a), int(b)) for a, b in rows] if rows is not None else None
    limit = min(k, TOP_MAX)
    while True:
        hits = search(limit)
        out, seen = [], set()
        for hit in hits:
            row = snap.row_of(*_split(hit["pk"]), allowed)
            if row is not None and row not in seen:
                seen.add(row)
                out.append((row, float(hit["distance"]), hit.get("entity", {})))
        if len(out) >= k or len(hits) < limit or limit >= TOP_MAX:
            return out[:k]
        limit = min(limit * 2, TOP_MAX)


def search_dense(snap: Searched, vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None) -> tuple[list[int], list[float]]:
    query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    expr = snap.scope_filter(rows)

    def search(limit: int):
        return snap.store.client.search(
            snap.collection, data=[query], anns_field="vector", limit=limit, filter=expr,
            search_params={"metric_type": "IP", "params": {"ef": max(limit, 256)}}, output_fields=["record", "vector"],
        )[0]

    found = searched(snap, search, k, rows)
    snap.remember(found)
    return [r for r, _, _ in found], [s for _, s, _ in found]


def search_hybrid(
    snap: Searched, query: str, vector: np.ndarray, k: int, rrf_k: int, rows: Sequence[tuple[int, int]] | None = None
) -> list[tuple[int, float]]:
    """The dense and BM25 lists (k each) fused by Milvus's RRF, up to 2k rows best first."""
    from pymilvus import AnnSearchRequest, RRFRanker

    words = keyword_text(query)
    dense = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    expr = snap.scope_filter(rows)
    if not words:  # no keyword list: RRF of the dense list alone
        found, _ = search_dense(snap, vector, k, rows)
        return [(row, 1.0 / (rrf_k + rank)) for rank, row in enumerate(found, start=1)]

    def search(limit: int):
        requests = [
            AnnSearchRequest(data=[dense], anns_field="vector", param={"metric_type": "IP", "params": {"ef": max(limit, 256)}}, limit=limit, expr=expr),
            AnnSearchRequest(data=[words], anns_field="sparse", param={"metric_type": "BM25"}, limit=limit, expr=expr),
        ]
        return snap.store.client.hybrid_search(
            snap.collection, requests, ranker=RRFRanker(rrf_k), limit=2 * limit, output_fields=["record", "vector"]
        )[0]

    found = searched(snap, lambda limit: search(max(limit // 2, 1)), 2 * k, rows)
    snap.remember(found)
    return [(row, score) for row, score, _ in found]


class MilvusKeyword:
    """BM25 by the collection's function over our own stems; document frequencies by text-match
    counts, cached for the snapshot."""

    def __init__(self, snapshot: Searched) -> None:
        self._snapshot = snapshot
        self._df: dict[str, int] = {}
        self._used: dict[tuple, bool] = {}

    def search(self, query: str, k: int, within: Sequence[tuple[int, int]] | None = None) -> KeywordHits:
        snap = self._snapshot
        words = keyword_text(query)
        if not words:
            return KeywordHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        expr = snap.scope_filter(within)

        def search(limit: int):
            return snap.store.client.search(
                snap.collection, data=[words], anns_field="sparse", limit=limit, filter=expr,
                search_params={"metric_type": "BM25"}, output_fields=["record", "vector"],
            )[0]

        found = searched(snap, search, k, within)
        snap.remember(found)
        # Milvus Lite reports BM25 as a negated distance; a cluster as the score itself.
        return KeywordHits(np.array([r for r, _, _ in found], np.int64), np.array([abs(s) for _, s, _ in found], np.float32))

    def _count(self, expr: str) -> int:
        snap = self._snapshot
        found = snap.store.client.query(snap.collection, filter=expr, output_fields=["count(*)"])
        return int(found[0]["count(*)"]) if found else 0

    def idf(self, words: list[str]) -> dict[str, float]:
        snap = self._snapshot
        n = snap.size
        for word in dict.fromkeys(words):
            if word not in self._df:
                self._df[word] = self._count(f"TEXT_MATCH(words, '{keyword_token(word)}') and born <= {snap.generation}")
        return {w: float(np.log(1 + (n - self._df[w] + 0.5) / (self._df[w] + 0.5))) for w in words}

    def used_within(self, words: list[str], within: Sequence[tuple[int, int]]) -> set[str]:
        snap = self._snapshot
        scope = tuple((int(a), int(b)) for a, b in within)
        expr = snap.scope_filter(scope)
        out = set()
        for word in dict.fromkeys(words):
            key = (word, scope)
            if key not in self._used:
                found = snap.store.client.query(
                    snap.collection, filter=f"TEXT_MATCH(words, '{keyword_token(word)}') and {expr}", output_fields=["pk"], limit=16
                )
                # The rows must be this generation's, in the scope (a shared segment's other paper is not)
                self._used[key] = any(snap.row_of(*_split(r["pk"]), list(scope)) is not None for r in found)
            if self._used[key]:
                out.add(word)
        return out


def _split(pk: str) -> tuple[str, int]:
    """A chunk row's key, "<segment>/<ordinal>", as (segment, ordinal)."""
    segment, ordinal = pk.rsplit("/", 1)
    return segment, int(ordinal)
