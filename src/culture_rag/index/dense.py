"""Dense (FAISS) search: building the vector index of one part of a generation, and searching
a generation's parts with per-thread OpenMP settings. Nothing here reads or writes the disk:
the index package stores the parts, this module builds and searches them."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence

import numpy as np

# Exact search scans every vector: about 8 ms per 100k on one core here, so up to 200k rows a
# part stays exact. A larger part is an inverted file (IVF): vectors grouped by their nearest of
# ~2·sqrt(n) centroids, a query scanning the IVF_NPROBE nearest groups. Its lists are read
# memory-mapped (faiss.IO_FLAG_MMAP), so opening it reads none of them; recall against exact
# search is in bench/README.md (bench/scale.py).
IVF_THRESHOLD = 200_000
IVF_NPROBE = 64
IVF_TRAIN_PER_LIST = 40
MAX_RANGES = 16  # row ranges a selector compares one by one; more become a bitmap  # k-means training points per centroid (faiss warns below 39)


def part_type(n: int) -> str:
    return "ivf" if n > IVF_THRESHOLD else "flat"


def build_dense(vectors: np.ndarray, dim: int):
    """The index of one part: exact (flat) up to IVF_THRESHOLD rows, an inverted file above."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    _all_cores()
    if part_type(len(vectors)) == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(2 * math.sqrt(len(vectors)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), lists * IVF_TRAIN_PER_LIST), replace=False)
        index.train(vectors[np.sort(sample)])
    if len(vectors):
        index.add(vectors)
    return index


def _all_cores() -> None:
    """Building parallelizes well, whatever count this thread searches with."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _thread_state.threads = None


def part_vectors(index) -> np.ndarray:
    """A copy of the vectors of a flat part, in row order (one memcpy of faiss's storage)."""
    import faiss

    if index.ntotal == 0:
        return np.empty((0, index.d), np.float32)
    view = faiss.rev_swig_ptr(faiss.downcast_index(index).get_xb(), index.ntotal * index.d)
    return np.array(view, dtype=np.float32).reshape(index.ntotal, index.d)  # a copy: the view dies with the index


_search_threads = 1
_thread_state = threading.local()


def set_search_threads(n: int) -> None:
    """OpenMP threads per dense search (0: every core). OpenMP keeps this count per thread, so
    a count set once in the main thread never reaches a web server's request threads, which
    then search with every core; search_parts applies it in whichever thread searches."""
    global _search_threads
    _search_threads = n or os.cpu_count() or 1


def search_parts(
    parts: Sequence[tuple[object, int]], vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the k nearest over parts ((index, first row), in row order), best
    first, -1 rows padding. With `rows` (half-open [start, stop) ranges), only those rows are
    candidates, so a scope still gets its k nearest rather than what is left of the unscoped k;
    an inverted file then scans every list, which makes a scoped search exact."""
    import faiss

    if getattr(_thread_state, "threads", None) != _search_threads:
        faiss.omp_set_num_threads(_search_threads)
        _thread_state.threads = _search_threads
    query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
    wanted = _merged(rows) if rows is not None else None
    found = []
    for index, start in parts:
        local = None
        if wanted is not None:
            local = [(max(a, start) - start, min(b, start + index.ntotal) - start) for a, b in wanted]
            local = [(a, b) for a, b in local if b > a]
            if not local:
                continue
        scores, ids = _search(index, query, min(k, index.ntotal), local)
        found.append((scores, np.where(ids >= 0, ids + start, -1)))
    scores, ids = _best_of(found, k)
    return scores[0], ids[0]


def _search(index, query: np.ndarray, k: int, local: list[tuple[int, int]] | None):
    import faiss

    if k <= 0:
        return np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)
    ivf = isinstance(index, faiss.IndexIVF)
    if local is None:
        params = faiss.SearchParametersIVF(nprobe=IVF_NPROBE) if ivf else None
        return index.search(query, k, params=params)
    selector = _range_selector(local) if len(local) <= MAX_RANGES else _bitmap_selector(local, index.ntotal)
    params = faiss.SearchParametersIVF(sel=selector, nprobe=index.nlist) if ivf else faiss.SearchParameters(sel=selector)
    return index.search(query, k, params=params)


def _merged(rows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty, non-overlapping ranges (adjacent papers become one range)."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in rows if b > a):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


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


def _bitmap_selector(rows: list[tuple[int, int]], n: int):
    """One bit per row: many ranges (a scope of many papers, or the gaps removed papers leave)
    cost one lookup a row instead of a chain of comparisons."""
    import faiss

    mask = np.zeros(n, bool)
    for a, b in rows:
        mask[a:b] = True
    bits = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
    selector.kept = bits
    return selector


def _best_of(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (scores, rows) lists, best first; -1 rows pad."""
    if not parts:
        return np.full((1, 0), -np.inf, np.float32), np.full((1, 0), -1, np.int64)
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
