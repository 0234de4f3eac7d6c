"""A deterministic reranker for fast tests: the share of the question's words a passage holds."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


class WordOverlapReranker:
    name = "fake:word-overlap@1"

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        wanted = set(re.findall(r"\w+", query.lower()))
        if not wanted:
            return np.zeros(len(passages), dtype=np.float32)
        return np.array([len(wanted & set(re.findall(r"\w+", p.lower()))) / len(wanted) for p in passages], dtype=np.float32)
