"""Keyword index: BM25 over English-stemmed word tokens (bm25s's tokenizer and stop words),
scored at query time from term-major postings: one set per merged part of the index, read
memory-mapped, and one per paper added since (from the term counts its segment stores)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


def tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)


_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's token pattern


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    """The words bm25s.tokenize(stopwords="en") drops."""
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return _stemmer()([word])[0]


def content_words(text: str) -> list[str]:
    """Stemmed words without stop words, as the keyword index sees them: bm25s.tokenize's
    steps, without its per-call progress bars and vocabularies (an extractive answer calls this
    for every candidate sentence; bm25s.tokenize cost ~10 ms of each answer)."""
    stop = _stop_words()
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in stop]


@dataclass(frozen=True)
class KeywordHits:
    rows: np.ndarray  # positions in the chunk table, best first
    scores: np.ndarray


@dataclass(frozen=True)
class TermCounts:
    """How often each stemmed term occurs in each chunk: rows are chunks, columns `vocab` ids."""

    vocab: dict[str, int]
    matrix: sparse.csr_matrix

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> TermCounts:
        tokenized = tokenize(list(texts))
        lengths = [len(ids) for ids in tokenized.ids]
        rows = np.repeat(np.arange(len(lengths)), lengths)
        cols = np.fromiter((i for ids in tokenized.ids for i in ids), np.int32, count=sum(lengths))
        matrix = sparse.csr_matrix(
            (np.ones(len(cols), np.int32), (rows, cols)), shape=(len(lengths), len(tokenized.vocab)), dtype=np.int32
        )
        matrix.sum_duplicates()
        return cls(dict(tokenized.vocab), matrix)

    @property
    def size(self) -> int:
        return self.matrix.shape[0]

    def rows(self, start: int, stop: int) -> TermCounts:
        return TermCounts(self.vocab, self.matrix[start:stop])

    @classmethod
    def concat(cls, parts: Sequence[TermCounts]) -> TermCounts:
        """Rows of every part in order, over the union of their vocabularies. Parts taken from
        one index share its vocabulary object, so only new papers' terms are mapped."""
        vocabs = {id(p.vocab): p.vocab for p in parts}
        base = max(vocabs.values(), key=len, default={})
        union = dict(base)
        mapping: dict[int, np.ndarray | None] = {id(base): None}
        for key, vocab in vocabs.items():
            if key != id(base):
                mapping[key] = _ids_in(union, _terms_of(vocab))
        blocks = []
        for part in parts:
            m = part.matrix
            ids = mapping[id(part.vocab)]
            if ids is not None:
                m = sparse.csr_matrix((m.data, ids[m.indices], m.indptr), shape=m.shape)
            blocks.append(sparse.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], len(union))))
        matrix = sparse.vstack(blocks, format="csr", dtype=np.int32) if blocks else sparse.csr_matrix((0, 0), dtype=np.int32)
        return cls(union, matrix)

    def save(self, path: Path) -> None:
        """One .npz of plain arrays, the vocabulary as one newline-joined string (terms are word
        characters): loads without pickle, and without a Python object per term."""
        m = self.matrix
        with open(path, "wb") as fh:
            np.savez(fh, vocab=np.array("\n".join(_terms_of(self.vocab))), data=m.data, indices=m.indices, indptr=m.indptr)

    @classmethod
    def load(cls, path: Path, n_docs: int) -> TermCounts:
        """Counts saved by `save`, for `n_docs` chunks; a bad file raises TermFileError naming it."""
        terms, counts, indices, pointers = _read_counts(path, n_docs)
        matrix = sparse.csr_matrix((counts.astype(np.int32), indices.astype(np.int32), pointers.astype(np.int64)), shape=(n_docs, len(terms)))
        return cls(dict(zip(terms, range(len(terms)))), matrix)


class TermFileError(ValueError):
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


def _read_counts(path: Path, n_docs: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            joined, data, indices, indptr = (arrays[k] for k in ("vocab", "data", "indices", "indptr"))
        terms = str(joined).split("\n") if str(joined) else []
        ok = (
            joined.ndim == 0 and data.ndim == indices.ndim == indptr.ndim == 1 and len(data) == len(indices)
            and np.issubdtype(data.dtype, np.integer) and np.issubdtype(indices.dtype, np.integer)
            and len(indptr) == n_docs + 1 and indptr[0] == 0 and indptr[-1] == len(indices)
            and bool(np.all(np.diff(indptr) >= 0)) and (not len(indices) or (indices.min() >= 0 and indices.max() < len(terms)))
        )
    except (ValueError, KeyError, OSError, EOFError, AttributeError, TypeError) as exc:  # pickles end here too
        raise TermFileError(path, f"not plain term counts ({exc})") from None
    if not ok:
        raise TermFileError(path, f"term counts that do not fit the segment's {n_docs} chunks")
    return terms, data, indices, indptr


def _terms_of(vocab: dict[str, int]) -> list[str]:
    """The terms in column order."""
    return sorted(vocab, key=vocab.__getitem__)


def _ids_in(union: dict[str, int], terms: list[str]) -> np.ndarray:
    """Each term's column in `union`, adding the terms it lacks (in their order in `terms`).
    Set and dict operations in C rather than a call per term: loading 13k segments merges
    millions of terms."""
    missing = set(terms).difference(union.keys())
    if missing:
        fresh = [t for t in terms if t in missing]
        union.update(zip(fresh, range(len(union), len(union) + len(fresh))))
    return np.fromiter(map(union.__getitem__, terms), np.int32, count=len(terms))


@dataclass(frozen=True)
class Postings:
    """Term-major postings of a run of consecutive chunks: terms sorted (as UTF-8 bytes), each
    term's rows (local to the run) and counts, and each row's length in terms. Saved as plain
    .npy arrays that load memory-mapped: a query reads the postings of its own terms only."""

    terms: np.ndarray  # dtype S, sorted
    ptr: np.ndarray  # int64, len(terms) + 1
    rows: np.ndarray  # int32
    tf: np.ndarray  # int32
    lengths: np.ndarray  # int32, one per row

    FILES = ("terms.npy", "ptr.npy", "rows.npy", "tf.npy", "lengths.npy")

    @classmethod
    def of_counts(cls, counts: TermCounts) -> Postings:
        order = _terms_of(counts.vocab)
        encoded = [t.encode("utf-8") for t in order]
        sort = np.argsort(np.array(encoded, dtype=object), kind="stable") if encoded else np.zeros(0, np.int64)
        csc = counts.matrix.tocsc()[:, sort] if len(encoded) else sparse.csc_matrix(counts.matrix.shape, dtype=np.int32)
        csc.sort_indices()
        terms = np.array([encoded[i] for i in sort], dtype=f"S{max((len(t) for t in encoded), default=1)}")
        lengths = np.asarray(counts.matrix.sum(axis=1), dtype=np.int64).ravel().astype(np.int32)
        return cls(terms, csc.indptr.astype(np.int64), csc.indices.astype(np.int32), csc.data.astype(np.int32), lengths)

    @property
    def size(self) -> int:
        return len(self.lengths)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        key = term.encode("utf-8")
        i = int(np.searchsorted(self.terms, key))
        if i >= len(self.terms) or self.terms[i] != key:
            return _EMPTY_ROWS, _EMPTY_TF
        lo, hi = self.ptr[i], self.ptr[i + 1]
        return self.rows[lo:hi], self.tf[lo:hi]

    def save(self, folder: Path) -> None:
        for name, array in zip(self.FILES, (self.terms, self.ptr, self.rows, self.tf, self.lengths)):
            np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> Postings:
        """The saved arrays, memory-mapped; their checksums are the caller's to verify first.
        Shapes and ranges are checked here, so a damaged file is refused rather than misread."""
        arrays = [np.load(folder / name, allow_pickle=False, mmap_mode="r") for name in cls.FILES]
        terms, ptr, rows, tf, lengths = arrays
        ok = (
            terms.ndim == ptr.ndim == rows.ndim == tf.ndim == lengths.ndim == 1 and terms.dtype.kind == "S"
            and len(ptr) == len(terms) + 1 and len(rows) == len(tf) and int(ptr[0]) == 0 and int(ptr[-1]) == len(rows)
            and all(np.issubdtype(a.dtype, np.integer) for a in (ptr, rows, tf, lengths))
            and (not len(rows) or (int(rows.min()) >= 0 and int(rows.max()) < len(lengths)))
        )
        if not ok:
            raise TermFileError(folder, "keyword postings whose arrays do not fit together")
        return cls(terms, ptr, rows, tf, lengths)


_EMPTY_ROWS, _EMPTY_TF = np.empty(0, np.int32), np.empty(0, np.int32)
K1, B = 1.5, 0.75  # bm25s's defaults (Lucene BM25); tests/test_index.py compares the scores with bm25s


class KeywordIndex:
    """BM25 scored at query time over parts: runs of consecutive rows, each with its postings
    (`(postings, first row)` in row order). Corpus statistics (documents, lengths, document
    frequencies) are summed over all parts, so scores are exactly BM25 over the whole index.
    bm25s precomputes every chunk's scores instead, which bakes in those statistics: adding one
    paper re-scored every chunk. Tokenizing and stop words are bm25s's."""

    def __init__(self, parts: Sequence[tuple[Postings, int]], live: Sequence[tuple[int, int]] | None = None) -> None:
        self._parts = tuple(parts)
        self.size = max((start + p.size for p, start in self._parts), default=0)
        # Rows of removed papers stay in their part until it is merged: they are never ranked.
        self._unused = None
        if live is not None:
            self._unused = np.ones(self.size, bool)
            for a, b in live:
                self._unused[a:b] = False
        lengths = np.zeros(self.size, np.float32)
        for postings, start in self._parts:
            lengths[start : start + postings.size] = postings.lengths
        average = float(lengths.mean()) if self.size else 1.0
        self._norm = (K1 * (1 - B + B * lengths / (average or 1.0))).astype(np.float32)

    @classmethod
    def build(cls, texts: list[str]) -> KeywordIndex:
        return cls([(Postings.of_counts(TermCounts.of_texts(texts)), 0)])

    def _postings(self, term: str) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for postings, start in self._parts:
            rows, tf = postings.postings(term)
            if len(rows):
                out.append((rows.astype(np.int64) + start, tf))
        return out

    def _idf(self, postings: list[tuple[np.ndarray, np.ndarray]]) -> float:
        df = sum(len(rows) for rows, _ in postings)
        return float(np.log(1 + (self.size - df + 0.5) / (df + 0.5)))

    def idf(self, words: list[str]) -> dict[str, float]:
        """Inverse document frequency of stemmed words (unknown words count as rare)."""
        return {w: self._idf(self._postings(w)) for w in words}

    def used_within(self, words: list[str], within: Sequence[tuple[int, int]]) -> set[str]:
        """The stemmed words that occur in at least one row of the [start, stop) ranges."""
        out = set()
        for word in words:
            for rows, _ in self._postings(word):
                if any(((rows >= a) & (rows < b)).any() for a, b in within):
                    out.add(word)
                    break
        return out

    def search(self, query: str, k: int, within: Sequence[tuple[int, int]] | None = None) -> KeywordHits:
        """BM25 top k; a term repeated in the query counts again, as in bm25s. With `within`
        (half-open [start, stop) ranges), only those rows are ranked; corpus statistics stay
        the whole index's, so a scoped row scores as it does unscoped."""
        scores = None
        for term in content_words(query):
            postings = self._postings(term)
            if not postings:
                continue
            idf = np.float32(self._idf(postings))
            scores = np.zeros(self.size, np.float32) if scores is None else scores
            for rows, tf in postings:  # rows are unique within one term's postings, so += is safe
                tf = tf.astype(np.float32)
                scores[rows] += idf * tf / (self._norm[rows] + tf)
        if scores is None:
            return KeywordHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        if self._unused is not None:
            scores[self._unused] = 0.0
        if within is not None:
            return _top_k_of(scores, k, within)
        return _top_k(scores, k)


def _top_k_of(scores: np.ndarray, k: int, rows: Sequence[tuple[int, int]]) -> KeywordHits:
    """Best k among the rows of `rows`, in their positions in the whole index."""
    ranges = [(max(int(a), 0), min(int(b), len(scores))) for a, b in rows]
    positions = np.unique(np.concatenate([np.arange(a, b) for a, b in ranges if b > a] or [np.zeros(0, np.int64)]))
    hits = _top_k(scores[positions], k)
    return KeywordHits(positions[hits.rows], hits.scores)


def _top_k(scores: np.ndarray, k: int) -> KeywordHits:
    """Best k documents, ranking only those that can make the top k (a few thousand, not every
    document that matched a common word: about 5x faster at 1M chunks, bench/scale.py)."""
    docs = np.flatnonzero(scores >= _floor(scores, k))
    totals = scores[docs]
    if len(docs) > k:
        best = np.argpartition(-totals, k - 1)[:k]
        docs, totals = docs[best], totals[best]
    order = np.lexsort((docs, -totals))  # best first, ties by row for a stable order
    return KeywordHits(docs[order].astype(np.int64), totals[order])


def _floor(scores: np.ndarray, k: int) -> float:
    """A score no higher than the k-th best: the k-th best of every 64th document (a subset's
    k-th best never beats the whole set's). Only documents at or above it can make the top k:
    a few thousand to rank instead of every document that matched a common word."""
    sample = scores[::64]
    smallest = float(np.nextafter(np.float32(0), np.float32(1)))  # BM25 scores are positive; 0 is no match
    if len(sample) <= k:
        return smallest
    return max(float(np.partition(sample, len(sample) - k)[len(sample) - k]), smallest)
