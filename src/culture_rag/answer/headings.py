"""Matching a question's plan against a paper's headings and captions: the headings that meet
its topic, those that name the sections it expects its answer in, and whether a caption is
that of the table or figure it names. Words are compared as the keyword index sees them
(lexical.content_words), with a prefix rule for what the stemmer leaves apart.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from culture_rag.answer.intents import FRONT_MATTER
from culture_rag.answer.query import QueryPlan
from culture_rag.index.lexical import content_words

_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def match_headings(plan: QueryPlan, headings: Sequence[str]) -> list[str]:
    """The headings whose words meet the question's topic words, best first: each shared word
    weighs by how few of these headings have it (a word in every heading picks none). Headings
    scoring under half the best are left out."""
    return _ranked(plan.topic_words, headings)


def section_headings(plan: QueryPlan, headings: Sequence[str]) -> list[str]:
    """The headings that name one of the plan's sections ("4. Findings and Analysis" for
    "findings", "3.2 Give Full Play ..." for "3.2"), in the given order."""
    return [h for h in headings if section_rank(plan, [h]) is not None]


def section_rank(plan: QueryPlan, heading_path: Sequence[str]) -> int | None:
    """Which of the plan's sections (best first: "conclusion" before "findings") a heading on
    the path names; None when none does."""
    wanted = [s for s in plan.sections if s != FRONT_MATTER]
    for rank, section in enumerate(wanted):
        if any(_names_section(section, h) for h in heading_path):
            return rank
    return None


def _names_section(section: str, heading: str) -> bool:
    """"3.2 Give Full Play ..." names section "3.2" (and "3. The ..." section "3", but not
    "3.2 ..."); "4. Findings and Analysis" names "findings"."""
    if _NUMBER.fullmatch(section):
        return bool(re.match(rf"\s*(?:section\s+)?{re.escape(section)}\.?(?:\s|$)", heading, re.I))
    want, words = content_words(section), content_words(heading)
    return bool(want) and all(any(_same_word(w, h) for h in words) for w in want)


def _ranked(words: Sequence[str], headings: Sequence[str]) -> list[str]:
    if not words or not headings:
        return []
    heading_words = [set(content_words(h)) for h in headings]
    df = Counter(w for hw in heading_words for w in set(words) if any(_same_word(w, h) for h in hw))
    weight = {w: math.log(len(headings) / df[w]) for w in df}
    scores = [sum(weight[w] for w in weight if any(_same_word(w, h) for h in hw)) for hw in heading_words]
    best = max(scores)
    if best <= 0:
        return []
    order = sorted(range(len(headings)), key=lambda i: (-scores[i], i))
    return [headings[i] for i in order if scores[i] > 0 and scores[i] >= 0.5 * best]


def _same_word(a: str, b: str) -> bool:
    """Stems equal, or one a 5+ letter prefix of the other: the stemmer leaves
    "international" as "internat" and "internationalization" as "internation"."""
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 5 and long.startswith(short)


def captions(ref: str, caption: str) -> bool:
    """Whether a caption ("Table 2: Market Growth ...", "Fig. 3. ...") is that of `ref`."""
    kind, number = ref.split()
    prefix = r"(?:table|tab\.)" if kind == "table" else r"(?:figure|fig\.)"
    return bool(re.match(rf"\s*{prefix}\s*{number}(?!\d)", caption, re.I))
