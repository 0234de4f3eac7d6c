"""Late chunking: a text's vector and its sentences' vectors pooled from one forward pass's
token embeddings, whichever backend ran the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SpanList = list[tuple[int, int]]  # character spans inside one text


@dataclass(frozen=True)
class TokenVectors:
    """One text after the model: its pooled, normalized vector and, per word piece (special tokens
    included), the token embedding, the character span, and whether it is a real piece."""

    vector: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray
    real: np.ndarray


@dataclass(frozen=True)
class Pooled:
    """A text's vector and the vectors of its spans (sentences), from one forward pass."""

    vector: np.ndarray
    spans: np.ndarray


def pooled(encoded: TokenVectors, spans: SpanList) -> Pooled:
    return Pooled(encoded.vector, span_vectors(encoded, spans))


def span_vectors(encoded: TokenVectors, spans: SpanList) -> np.ndarray:
    """Normalized mean of the token embeddings inside each character span ("late chunking"); a
    span without a whole piece inside takes the text's vector. Masked means, not one matrix
    product: that would call OpenBLAS, whose threads fight the embedding workers (indexing ran
    at 0.79 of raw encode instead of 1.03)."""
    offsets, rows = encoded.offsets, []
    for a, b in spans:
        inside = encoded.real & (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
        rows.append(encoded.tokens[inside].mean(axis=0) if inside.any() else encoded.vector)
    return _normalize(np.asarray(rows, dtype=np.float32).reshape(-1, encoded.vector.shape[-1]))


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
