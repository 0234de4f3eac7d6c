"""Dense (FAISS) search: building, extending and sharding the vector index of a generation,
and searching it with per-thread OpenMP settings. Nothing here reads or writes the disk: the
index package stores vectors, this module searches them."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

# Exact search scans every vector: about 8 ms per 100k on one core here, so up to 200k it stays
# within the latency budget, keeps recall exact, and rebuilds in a blink when a paper is added
# (an HNSW graph must be rebuilt whole). Above it, HNSW answers in about 3 ms (bench/scale.py).
HNSW_THRESHOLD = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40  # 80 built 1.7x slower (100k) for +0.004 recall@50
# Nodes explored per query. On bench/synthetic.py's real-like vectors, recall@10 against exact
# search: 100k 0.998 at 128; 1M 0.73 at 128, 0.90 at 512, 0.99 at 1024 (3 ms, exact: 87 ms).
HNSW_EF_SEARCH = 1024

MAX_SHARDS = 8  # flat indexes appended as shards of their own, merged into one beyond this


def extend_dense(dense, vectors: np.ndarray, dim: int):
    """`dense` plus `vectors` after its last row, leaving `dense` as it is (queries may be
    searching it). Exact search gets the new vectors as a shard of their own: no copy of the
    index; an HNSW graph is copied and grown."""
    import faiss

    if not len(vectors):
        return dense
    if isinstance(dense, faiss.IndexHNSW):
        grown = faiss.clone_index(dense)
        add_vectors(grown, vectors)
        return grown
    parts = shards(dense) + [build_dense(vectors, dim)]
    if len(parts) > MAX_SHARDS:
        return build_dense(np.concatenate([stored_vectors(s) for s in parts]), dim)
    combined = faiss.IndexShards(dim, False, True)  # successive ids: rows continue from shard to shard
    for shard in parts:
        combined.add_shard(shard)  # faiss's wrapper keeps a reference to each shard
    return combined


def shards(index) -> list:
    import faiss

    if isinstance(index, faiss.IndexShards):
        # The Python objects given to add_shard, which own the shards, in order (faiss's wrapper
        # keeps them there): a new IndexShards must hold these, not wrappers made from
        # index.at(i), or the shards die with the generation they came from.
        owned = list(index.referenced_objects)
        assert len(owned) == index.count()
        return owned
    return [index]


def dense_vector(index, row: int) -> np.ndarray:
    """The stored vector of one row, also across the shards of an extended exact index."""
    for shard in shards(index):
        if row < shard.ntotal:
            return shard.reconstruct(row)
        row -= shard.ntotal
    raise IndexError(row)


def dense_type(n: int) -> str:
    return "hnsw" if n > HNSW_THRESHOLD else "flat"


_search_threads = 1
_thread_state = threading.local()


def set_search_threads(n: int) -> None:
    """OpenMP threads per dense search (0: every core). OpenMP keeps this count per thread, so
    a count set once in the main thread never reaches a web server's request threads, which
    then search with every core; search_dense applies it in whichever thread searches."""
    global _search_threads
    _search_threads = n or os.cpu_count() or 1


def search_dense(
    index, vectors: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the k nearest; an HNSW graph explores at least HNSW_EF_SEARCH nodes
    (faiss's default of 16, raised only to k, loses neighbours when k is 50). With `rows`
    (half-open [start, stop) ranges), only those rows are candidates, so a scope still gets
    its k nearest rather than what is left of the unscoped k."""
    import faiss

    if getattr(_thread_state, "threads", None) != _search_threads:
        faiss.omp_set_num_threads(_search_threads)
        _thread_state.threads = _search_threads
    query = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, index.d)
    if rows is not None:
        return _search_rows(index, query, k, _merged(rows))
    if isinstance(index, faiss.IndexHNSW):
        return index.search(query, k, params=faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k)))
    return index.search(query, k)


def _merged(rows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty, non-overlapping ranges (adjacent papers become one range)."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in rows if b > a):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _search_rows(index, query: np.ndarray, k: int, rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    if isinstance(index, faiss.IndexShards):
        # IndexShards hands a selector to every shard unchanged, and shards test their own
        # local ids against it (faiss issue #5581): each shard is searched with its ranges
        # shifted into its own ids, and the lists merged.
        parts, offset = [], 0
        for shard in shards(index):
            local = [(max(a, offset) - offset, min(b, offset + shard.ntotal) - offset) for a, b in rows]
            local = [(a, b) for a, b in local if b > a]
            if local:
                scores, ids = _search_rows(shard, query, k, local)
                parts.append((scores, np.where(ids >= 0, ids + offset, -1)))
            offset += shard.ntotal
        return _best_of(parts, query.shape[0], k)
    selector = _range_selector(rows)
    if isinstance(index, faiss.IndexHNSW):
        if sum(b - a for a, b in rows) <= HNSW_THRESHOLD:
            # A small scope is a needle for the graph, which may find fewer than k of it; an
            # exact scan of its rows costs what exact search of an index that size costs.
            return faiss.downcast_index(index.storage).search(query, k, params=faiss.SearchParameters(sel=selector))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        return index.search(query, k, params=params)
    return index.search(query, k, params=faiss.SearchParameters(sel=selector))


def _range_selector(rows: list[tuple[int, int]]):
    """One IDSelectorRange per range, joined with IDSelectorOr. Each selector refers to the
    ones it joins without owning them, so they are chained on `.kept` to live as long as it."""
    import faiss

    selectors = [faiss.IDSelectorRange(a, b) for a, b in rows] or [faiss.IDSelectorRange(0, 0)]
    selector = selectors[0]
    for other in selectors[1:]:
        joined = faiss.IDSelectorOr(selector, other)
        joined.kept = (selector, other)
        selector = joined
    return selector


def _best_of(parts: list[tuple[np.ndarray, np.ndarray]], n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (scores, rows) lists per query, best first; -1 rows pad."""
    if not parts:
        return np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def stored_vectors(index) -> np.ndarray:
    """A copy of the vectors a flat or HNSW index holds, in row order: one memcpy of faiss's
    storage (reconstruct_n copies vector by vector, several times slower)."""
    import faiss

    if isinstance(index, faiss.IndexShards):
        return np.concatenate([stored_vectors(s) for s in shards(index)])
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if index.ntotal == 0:
        return np.empty((0, index.d), np.float32)
    view = faiss.rev_swig_ptr(storage.get_xb(), index.ntotal * index.d)
    return np.array(view, dtype=np.float32).reshape(index.ntotal, index.d)  # a copy: the view dies with the index


def build_dense(vectors: np.ndarray, dim: int):
    import faiss

    if dense_type(len(vectors)) == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        index = faiss.IndexFlatIP(dim)
    add_vectors(index, vectors)
    return index


def add_vectors(index, vectors: np.ndarray) -> None:
    import faiss

    if len(vectors):
        # Building a graph parallelizes well, whatever count this thread searches with.
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        _thread_state.threads = None
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))

