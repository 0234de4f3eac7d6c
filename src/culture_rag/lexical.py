"""Keyword index: BM25 (bm25s, sparse matrices) over English-stemmed word tokens.

Beside bm25s's score matrix, each index keeps the term counts it was scored from. BM25 scores
depend on corpus-wide statistics, so adding one paper changes every chunk's scores; with the
counts kept, they are recomputed in one vectorized pass instead of tokenizing every chunk again
(bm25s has no incremental update, and its builder loops over documents in Python).
"""

from __future__ import annotations

import json
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
    from bm25s.tokenization import _infer_stopwords

    return frozenset(_infer_stopwords("en"))


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


COUNT_FILES = ("counts.data.npy", "counts.indices.npy", "counts.indptr.npy", "counts.vocab.json")


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
                ids = np.empty(len(vocab), np.int32)
                for term, i in vocab.items():
                    ids[i] = union.setdefault(term, len(union))
                mapping[key] = ids
        blocks = []
        for part in parts:
            m = part.matrix
            ids = mapping[id(part.vocab)]
            if ids is not None:
                m = sparse.csr_matrix((m.data, ids[m.indices], m.indptr), shape=m.shape)
            blocks.append(sparse.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], len(union))))
        matrix = sparse.vstack(blocks, format="csr", dtype=np.int32) if blocks else sparse.csr_matrix((0, 0), dtype=np.int32)
        return cls(union, matrix)

    def save(self, directory: Path) -> None:
        m = self.matrix
        for name, array in zip(COUNT_FILES[:3], (m.data, m.indices, m.indptr), strict=False):
            np.save(directory / name, array, allow_pickle=False)
        (directory / COUNT_FILES[3]).write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, n_docs: int) -> TermCounts:
        data, indices, indptr = (np.load(directory / name, allow_pickle=False) for name in COUNT_FILES[:3])
        vocab = json.loads((directory / COUNT_FILES[3]).read_text(encoding="utf-8"))
        if not isinstance(vocab, dict) or len(indptr) != n_docs + 1:
            raise ValueError(f"term counts for {len(indptr) - 1} chunks, the index has {n_docs}")
        return cls(vocab, sparse.csr_matrix((data, indices, indptr), shape=(n_docs, len(vocab))))


class KeywordIndex:
    def __init__(self, model, counts: TermCounts | None = None, directory: Path | None = None) -> None:
        self._model = model
        self._counts = counts
        self._directory = directory

    @classmethod
    def build(cls, texts: list[str]) -> KeywordIndex:
        return cls.from_counts(TermCounts.of_texts(texts))

    @classmethod
    def from_counts(cls, counts: TermCounts) -> KeywordIndex:
        """bm25s's default scoring (Lucene BM25, k1 1.5, b 0.75), computed for all chunks at
        once; tests/test_index.py checks it against bm25s's own builder."""
        import bm25s

        model = bm25s.BM25()
        csc = counts.matrix.tocsc()
        n_docs = counts.size
        lengths = np.asarray(counts.matrix.sum(axis=1)).ravel().astype(np.float64)
        avg = lengths.mean() if n_docs else 1.0
        df = np.diff(csc.indptr).astype(np.float64)
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        tf = csc.data.astype(np.float64)
        norm = model.k1 * ((1 - model.b) + model.b * lengths[csc.indices] / (avg or 1.0))
        columns = np.repeat(np.arange(len(df)), np.diff(csc.indptr))
        data = (idf[columns] * tf / (norm + tf)).astype(np.float32)
        model.scores = {"data": data, "indices": csc.indices.astype(np.int32), "indptr": csc.indptr, "num_docs": n_docs}
        vocab = dict(counts.vocab)
        vocab.setdefault("", max(vocab.values(), default=-1) + 1)  # as bm25s adds it
        model.vocab_dict = vocab
        model.unique_token_ids_set = set(vocab.values())
        model.nonoccurrence_array = None
        return cls(model, counts)

    @property
    def counts_loaded(self) -> bool:
        return self._counts is not None

    def counts(self) -> TermCounts | None:
        """The term counts behind the scores; None for an index saved without them."""
        if self._counts is None and self._directory is not None and (self._directory / COUNT_FILES[0]).is_file():
            self._counts = TermCounts.load(self._directory, self.size)
        return self._counts

    @property
    def size(self) -> int:
        return int(self._model.scores["num_docs"])

    def save(self, directory: Path) -> None:
        self._model.save(str(directory), show_progress=False)
        if self._counts is not None:
            self._counts.save(directory)

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(directory), allow_pickle=False, show_progress=False), directory=directory)

    def idf(self, words: list[str]) -> dict[str, float]:
        """Inverse document frequency of stemmed words (unknown words count as rare)."""
        vocab = self._model.vocab_dict
        indptr = self._model.scores["indptr"]
        n = self.size
        out = {}
        for w in words:
            df = int(indptr[vocab[w] + 1] - indptr[vocab[w]]) if w in vocab else 0
            out[w] = float(np.log(1 + (n - df + 0.5) / (df + 0.5)))
        return out

    def search(self, query: str, k: int) -> KeywordHits:
        vocab = self._model.vocab_dict
        known = [t for t in content_words(query) if t in vocab]
        if not known:
            return KeywordHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        if self._model.nonoccurrence_array is not None:  # BM25L/BM25+ score every document
            rows, scores = self._model.retrieve([known], k=min(k, self.size), show_progress=False, n_threads=1)
            keep = scores[0] > 0
            return KeywordHits(rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))
        return _top_k(self._model.scores, [vocab[t] for t in known], k)


def _top_k(matrix: dict, term_ids: list[int], k: int) -> KeywordHits:
    """BM25 top k from the precomputed term-document scores (CSC), summed as bm25s sums them.
    bm25s then partitions the scores of every document, most of the time at 1M chunks; ranking
    only the documents that can make the top k makes keyword search about 5x faster there
    (bench/scale.py). A term repeated in the query counts again, as in bm25s."""
    indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
    scores = np.zeros(int(matrix["num_docs"]), dtype=np.float32)
    for t in term_ids:
        np.add.at(scores, indices[indptr[t] : indptr[t + 1]], data[indptr[t] : indptr[t + 1]])
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
