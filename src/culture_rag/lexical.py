"""Keyword index: BM25 (bm25s, sparse matrices) over English-stemmed word tokens."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

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


class KeywordIndex:
    def __init__(self, model) -> None:
        self._model = model

    @classmethod
    def build(cls, texts: list[str]) -> KeywordIndex:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG
        model = bm25s.BM25()
        model.index(tokenize(texts), show_progress=False)
        return cls(model)

    @property
    def size(self) -> int:
        return int(self._model.scores["num_docs"])

    def save(self, directory: Path) -> None:
        self._model.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(directory), allow_pickle=False, show_progress=False))

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
