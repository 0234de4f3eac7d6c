"""A deterministic embedder for fast unit tests: hashed bag of words, whitespace word pieces."""

from __future__ import annotations

import hashlib
import re

import numpy as np


class HashEmbedder:
    model_id = "fake:hash"
    fingerprint = "fake:hash@1"
    dimension = 64
    max_tokens = 254

    def __init__(self) -> None:
        self.embedded = 0  # texts embedded so far, for incremental-build assertions

    def count(self, texts: list[str]) -> list[int]:
        return [len(re.findall(r"\S+", t)) for t in texts]

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        return [(words[i][0], words[min(i + max_tokens, len(words)) - 1][1]) for i in range(0, len(words), max_tokens)]

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_passages(self, texts, sentence_spans, progress=None):
        from culture_rag.embed.embedder import PassageVectors

        self.embedded += len(texts)
        if progress:
            progress(len(texts))
        sentences = [self._vector(t[a:b]) for t, spans in zip(texts, sentence_spans) for a, b in spans]
        return PassageVectors(self.embed_texts(texts), np.stack(sentences) if sentences else np.zeros((0, self.dimension), np.float32))

    def embed_texts(self, texts):
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)
