"""An answer before its timings: the Draft every answerer returns, and the check that keeps
a generated sentence only when a passage it cites supports it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from culture_rag.answer.citations import CheckedSentence, IdfFn, check_claims, cite, split_claims
from culture_rag.answer.prompts import DECLINED
from culture_rag.answer.sentences import tidy
from culture_rag.types import Citation, Hit


@dataclass(frozen=True)
class Draft:
    """What an answerer produces before timings are attached."""

    text: str
    citations: tuple[Citation, ...]
    answered: bool
    removed: tuple[str, ...] = ()
    notice: str = ""
    checked: tuple[CheckedSentence, ...] = field(default=(), repr=False)


def check_generated(text: str, hits: list[Hit], embed_texts, threshold: float, idf: IdfFn) -> Draft:
    """Keep the generated sentences that cite a retrieved passage supporting them."""
    if DECLINED.lower().rstrip(".") in text.lower():
        return Draft(DECLINED, (), answered=False)
    claims = split_claims(text)
    vectors = embed_texts([c for c, _ in claims]) if claims else np.empty((0, 0))
    checked = check_claims(claims, vectors, hits, threshold, idf)
    citations, parts = [], []
    for sentence in checked:
        if not sentence.kept:
            continue
        assert sentence.support is not None
        n = len(citations) + 1
        citations.append(cite(n, hits[sentence.cited[0] - 1], sentence.support.sentence))
        parts.append(f"{tidy(sentence.text)} [{n}]")
    removed = tuple(f"{s.text} ({s.reason})" for s in checked if not s.kept)
    return Draft(" ".join(parts), tuple(citations), answered=bool(parts), removed=removed, checked=tuple(checked))
