"""Candidate sentences for an answer: every quotable sentence of the retrieved passages, each
once (chunks overlap, so a sentence may stand in two), with the passage it was found in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from culture_rag.answer.sentences import NEVER_QUOTED, answer_text_of, quote_span  # headings, captions, references...: never quoted
from culture_rag.types import Hit, Span


@dataclass(frozen=True)
class Candidate:
    hit: int  # index into the hits it was read from
    sentence: int  # index into that chunk's sentences
    text: str  # as the answer shows it (a table row with its headers)
    span: Span  # what a citation quotes
    vector: np.ndarray  # the sentence's vector, stored by the index
    paper_id: str = ""


def candidates(hits: list[Hit]) -> list[Candidate]:
    """The quotable sentences of `hits`, best passage first, each sentence once."""
    seen: set[tuple[str, int]] = set()
    out: list[Candidate] = []
    for h, hit in enumerate(hits):
        chunk, vectors = hit.chunk, hit.sentence_vectors
        if vectors is None or len(vectors) != len(chunk.sentences):
            continue
        for i, span in enumerate(chunk.sentences):
            if span.role in NEVER_QUOTED:
                continue
            where = (chunk.paper_id, span.start)
            if where in seen:
                continue
            seen.add(where)
            text = answer_text_of(chunk, i)
            if text:
                out.append(Candidate(h, i, text, quote_span(chunk, i), vectors[i], chunk.paper_id))
    return out
