"""Scoring question sets in the format of shared/eval/FORMAT.md."""

from __future__ import annotations

import re


def normalize(text: str) -> str:
    """FORMAT.md's normalization for every substring match."""
    text = text.replace("\\$", "$").replace("\\", "")
    text = re.sub(r"[*_`]", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def contains_evidence(chunk_text: str, evidence: list[str]) -> bool:
    haystack = normalize(chunk_text)
    return any(normalize(e) in haystack for e in evidence if e.strip())
