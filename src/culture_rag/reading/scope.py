"""What a question scoped to a paper asks once the paper is chosen."""

from __future__ import annotations

import re
from collections.abc import Sequence

from culture_rag.answer.naming import title_span
from culture_rag.types import PaperInfo

_IN_THE_PAPER = re.compile(r"^\s*(in|from|according to)\s+(the|this)\s+(paper|article|study|work)\s*[,:]?\s*", re.I)


def without_titles(question: str, papers: Sequence[PaperInfo]) -> str:
    """The question without the title of a paper it is scoped to ('In the paper "<title>":
    what baselines ...?' asks what baselines): once the search is inside that paper, the title's
    words only pull its abstract and introduction ahead of the answer."""
    out = question
    for paper in papers:
        span = title_span(out, paper.title or "")
        if span is not None:
            out = f"{out[: span[0]]} {out[span[1]:]}"
    if out == question:
        return question
    out = _IN_THE_PAPER.sub("", re.sub(r"\s+", " ", out)).strip(" :,")
    return out or question
