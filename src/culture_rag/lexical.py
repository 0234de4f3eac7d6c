"""Keyword index: BM25 (bm25s, sparse matrices) over English-stemmed word tokens."""

from __future__ import annotations

import logging
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


def content_words(text: str) -> list[str]:
    """Stemmed words without stop words, as the keyword index sees them."""
    import bm25s

    return bm25s.tokenize([text], stopwords="en", stemmer=_stemmer(), show_progress=False, return_ids=False)[0]


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
        k = min(k, self.size)
        rows, scores = self._model.retrieve([known], k=k, show_progress=False, n_threads=1)
        keep = scores[0] > 0
        return KeywordHits(rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))
