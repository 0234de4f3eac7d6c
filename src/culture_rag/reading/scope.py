"""What a question scoped to a paper asks once the paper is chosen."""

from __future__ import annotations

import re
from collections.abc import Sequence

from culture_rag.types import PaperInfo

_IN_THE_PAPER = re.compile(r"^\s*(in|from|according to)\s+(the|this)\s+(paper|article|study|work)\s*[,:]?\s*", re.I)
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_QUOTES = "\"“”'‘’«»"
# A run of the question's words counts as the title when it holds this share of the title's
# words: a title quoted loosely, cut short or stored with a subtitle is still the title, while a
# question that shares two or three of its words ("what does the adaptation rely on") is not.
TITLE_SHARE = 0.6


def without_titles(question: str, papers: Sequence[PaperInfo]) -> str:
    """The question without the title of a paper it is scoped to ('In the paper "<title>":
    what baselines ...?' asks what baselines): once the search is inside that paper, the title's
    words only pull its abstract and introduction ahead of the answer."""
    out = question
    for paper in papers:
        span = _title_span(out, paper.title or "")
        if span is not None:
            out = f"{out[: span[0]]} {out[span[1]:]}"
    if out == question:
        return question
    out = _IN_THE_PAPER.sub("", re.sub(r"\s+", " ", out)).strip(" :,")
    return out or question


def _title_span(question: str, title: str) -> tuple[int, int] | None:
    """Where the title stands in the question: the longest run of words all from the title,
    with the quotes around it, when the run holds enough of the title."""
    title_words = {w.lower() for w in _WORD.findall(title)}
    if len(title_words) < 3:
        return None
    words = list(_WORD.finditer(question))
    best: tuple[int, int] | None = None
    start = 0
    for i, w in enumerate(words + [None]):
        if w is not None and w.group().lower() in title_words:
            continue
        run = words[start:i]
        if len({m.group().lower() for m in run}) >= max(3, TITLE_SHARE * len(title_words)) and (best is None or len(run) > best[1] - best[0]):
            best = (start, i)
        start = i + 1
    if best is None:
        return None
    begin, end = words[best[0]].start(), words[best[1] - 1].end()
    while begin > 0 and (question[begin - 1] in _QUOTES or question[begin - 1].isspace()):
        begin -= 1
    while end < len(question) and question[end] in _QUOTES:
        end += 1
    return begin, end
