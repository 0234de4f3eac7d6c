"""Keyword index: BM25 over English-stemmed word tokens (bm25s's tokenizer and stop words),
scored at query time from per-chunk term counts, which each paper's segment stores."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
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


def stem_in(word: str, found: set[str]) -> bool:
    """`word` among the stems `found`. The stemmer leaves some forms apart ("compet" and
    "competit", "internat" and "internation"): a stem of five letters or more also matches the
    longer stems it begins."""
    if word in found:
        return True
    return len(word) >= 5 and any(f.startswith(word) or len(f) >= 5 and word.startswith(f) for f in found)


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
    def merge_files(cls, files: Iterable[tuple[Path, int]]) -> TermCounts:
        """The saved counts of many segments ((path, chunks) in row order) as one matrix over
        one vocabulary, built as it reads: a 1M-chunk index is 13k files, and a vocabulary per
        file would cost gigabytes and minutes. A bad file raises TermFileError naming it."""
        vocab: dict[str, int] = {}
        data, indices, indptr, rows, nnz = [], [], [np.zeros(1, np.int64)], 0, 0
        for path, n_docs in files:
            terms, counts, local, pointers = _read_counts(path, n_docs)
            data.append(counts)
            indices.append(_ids_in(vocab, terms)[local])
            indptr.append(pointers[1:].astype(np.int64) + nnz)
            rows, nnz = rows + n_docs, nnz + int(pointers[-1])
        matrix = sparse.csr_matrix(
            (_joined(data, np.int32), _joined(indices, np.int32), np.concatenate(indptr)), shape=(rows, len(vocab))
        )
        return cls(vocab, matrix)


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


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


class _Part:
    """Term-major postings of a run of consecutive chunks starting at row `start`."""

    def __init__(self, counts: TermCounts, start: int) -> None:
        self.counts, self.start = counts, start
        csc = counts.matrix.tocsc()
        self.indptr = csc.indptr
        self.rows = (csc.indices + start).astype(np.int32)
        self.tf = csc.data.astype(np.float32)
        self.lengths = np.asarray(counts.matrix.sum(axis=1), dtype=np.float32).ravel()

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        col = self.counts.vocab.get(term)
        if col is None or col >= len(self.indptr) - 1:
            return _EMPTY_ROWS, _EMPTY_TF
        lo, hi = self.indptr[col], self.indptr[col + 1]
        return self.rows[lo:hi], self.tf[lo:hi]


_EMPTY_ROWS, _EMPTY_TF = np.empty(0, np.int32), np.empty(0, np.float32)
K1, B = 1.5, 0.75  # bm25s's defaults (Lucene BM25); tests/test_index.py compares the scores with bm25s
MAX_PARTS = 8  # papers appended as parts of their own, merged into one beyond this


class KeywordIndex:
    """BM25 scored at query time from term counts, over parts: one large run of chunks plus the
    papers appended since. Corpus statistics (documents, lengths, document frequencies) are summed
    over all parts, so scores are exactly BM25 over the whole index. bm25s precomputes every
    chunk's scores instead, which bakes in those statistics: adding one paper re-scored every
    chunk. Tokenizing and stop words are bm25s's."""

    def __init__(self, parts: Sequence[_Part]) -> None:
        self._parts = tuple(parts)
        self.size = sum(p.counts.size for p in self._parts)
        lengths = np.concatenate([p.lengths for p in self._parts]) if self._parts else np.zeros(0, np.float32)
        average = float(lengths.mean()) if self.size else 1.0
        self._norm = (K1 * (1 - B + B * lengths / (average or 1.0))).astype(np.float32)

    @classmethod
    def of_counts(cls, counts: TermCounts) -> KeywordIndex:
        return cls([_Part(counts, 0)])

    @classmethod
    def build(cls, texts: list[str]) -> KeywordIndex:
        return cls.of_counts(TermCounts.of_texts(texts))

    def appended(self, counts: TermCounts) -> KeywordIndex:
        """This index with new chunks after its last row: O(new chunks) until MAX_PARTS parts."""
        if len(self._parts) < MAX_PARTS:
            return KeywordIndex([*self._parts, _Part(counts, self.size)])
        return KeywordIndex.of_counts(TermCounts.concat([*(p.counts for p in self._parts), counts]))

    def counts(self, start: int, stop: int) -> TermCounts:
        """Term counts of rows start..stop, which lie in one part (a paper is never split)."""
        part = next(p for p in self._parts if p.start <= start and stop <= p.start + p.counts.size)
        return part.counts.rows(start - part.start, stop - part.start)

    def _postings(self, term: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return [p.postings(term) for p in self._parts]

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
            postings = [(rows, tf) for rows, tf in self._postings(term) if len(rows)]
            if not postings:
                continue
            idf = np.float32(self._idf(postings))
            scores = np.zeros(self.size, np.float32) if scores is None else scores
            for rows, tf in postings:  # rows are unique within one term's postings, so += is safe
                scores[rows] += idf * tf / (self._norm[rows] + tf)
        if scores is None:
            return KeywordHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
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
