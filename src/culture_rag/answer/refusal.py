"""Whether the evidence answers the question at all, decided from what it says rather than
from how similar it is: an off-topic question phrased like the papers is similar to them.

The passages must hold most of the question's topic words (weighted by rarity); a name the
papers in scope never use (a country, a dataset, a prize) declines outright; and a factual
answer must say something of what is asked, not only name what it is asked about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from culture_rag.answer.evidence import Evidence, framing_words
from culture_rag.answer.query import QueryPlan
from culture_rag.index.lexical import KeywordIndex, content_words, stem_in
from culture_rag.types import Hit

# A capitalized word after the first, or a word with capitals inside it (ImageNet, GPUs): a name.
_NAME = re.compile(r"(?<=\s)[A-Z][\w-]*|\b\w+[A-Z]\w*")
UNSEEN_WEIGHT = 2.0
# The kind of thing a list asks for ("what are the advantages of X?"): a paper sets out X's
# advantages without calling them so, so the passages need not hold the word.
CATEGORY_NOUNS = (
    "advantages benefits strengths merits weaknesses disadvantages drawbacks limitations shortcomings "
    "challenges problems issues difficulties obstacles barriers risks threats opportunities "
    "strategies measures steps ways paths approaches solutions recommendations suggestions policies "
    "factors reasons causes effects impacts consequences implications outcomes lessons features "
    "characteristics aspects elements components examples goals objectives aims trends"
)
_UNSEEN = "\x00"  # no token looks like this: its idf is that of a word no chunk has


def answers_question(
    plan: QueryPlan,
    terms: dict[str, float],
    chosen: list[Evidence],
    hits: list[Hit],
    keyword: KeywordIndex | None,
    scope: Sequence[tuple[int, int]] | None,
    min_coverage: float,
) -> bool:
    """The checks every answer but an authors one passes before it is given."""
    if plan.intent == "authors":
        return True
    if coverage(terms, hits) < min_coverage or _unknown_name(plan, keyword, scope) or _missing_phrase(plan, hits):
        return False
    if plan.intent in _CUES and not any(e.in_focus or _CUES[plan.intent] & set(content_words(e.text)) for e in chosen):
        return False  # no section of that name, and nothing quoted speaks of limits or of what comes next
    return plan.intent != "fact" or _says_what_is_asked(plan, terms, chosen)


# Words by which a sentence outside a "Limitations" or "Future work" section speaks of them.
_CUES = {
    "limitations": frozenset(content_words("limitation limited limit shortcoming drawback weakness caveat fails restricted")),
    "future": frozenset(content_words("future further next extend extension explore")),
}
# Two or more capitalized words in a row: one name ("Silk Road Fund"), not its words apart.
_PHRASE = re.compile(r"(?<=\s)[A-Z][\w-]*(?:\s+[A-Z][\w-]*)+")


def _missing_phrase(plan: QueryPlan, hits: list[Hit]) -> bool:
    """The question names something in several capitalized words that no passage holds in a
    row: the papers mention the Silk Road, not a "Silk Road Fund"."""
    # As asked ("China's Going out" is two names); the first word is capitalized whatever it is.
    phrases = [words for phrase in _PHRASE.findall(plan.question) if len(words := content_words(phrase)) >= 2]
    if not phrases:
        return False  # most questions: the passages need not be read again
    found = [content_words(" ".join((h.chunk.text, *h.chunk.heading_path))) for h in hits]
    return any(not any(_holds(text, words) for text in found) for words in phrases)


def _holds(text: list[str], words: list[str]) -> bool:
    n = len(words)
    return any(text[i : i + n] == words for i in range(len(text) - n + 1))


def topic_terms(plan: QueryPlan, keyword: KeywordIndex | None, scope: Sequence[tuple[int, int]] | None = None) -> dict[str, float]:
    """The words that say what the question is about, weighted by rarity. A name that the
    papers in scope never use weighs double: a question about a country, a dataset or a prize
    they never name is not answered by a passage that is merely about the same field. Other
    words weigh at most as a word in one chunk of a hundred, so that a rare but ordinary word
    of the question ("besides") cannot decide alone."""
    framing = framing_words() | _category(plan)
    words = [w for w in dict.fromkeys(content_words(plan.topic)) if w not in framing and not w.isdigit()]
    if not keyword:
        return dict.fromkeys(words, 1.0)
    idf = keyword.idf(words)
    unseen = keyword.idf([_UNSEEN])[_UNSEEN]
    used = keyword.used_within(words, scope) if scope else {w for w in words if idf[w] < unseen}
    names = _names(plan)
    cap = float(np.log(1 + 100 / 1.5))  # bm25's idf of a word in one document of a hundred
    return {
        w: v * UNSEEN_WEIGHT if w in names and w not in used else min(v, cap)
        for w, v in idf.items()
    }


def _category(plan: QueryPlan) -> frozenset[str]:
    """The stem of the noun a list asks for, when it names a kind of thing (CATEGORY_NOUNS)."""
    listed = frozenset(content_words(plan.listed))
    return listed if listed & _category_stems() else frozenset()


@lru_cache(maxsize=1)
def _category_stems() -> frozenset[str]:
    return frozenset(content_words(CATEGORY_NOUNS))


def coverage(terms: dict[str, float], hits: list[Hit]) -> float:
    """Share of the topic's weight that the passages the answer draws on (with their headings)
    contain."""
    if not terms:
        return 1.0
    found: set[str] = set()
    for hit in hits:
        found.update(content_words(" ".join((hit.chunk.text, hit.chunk.context, *hit.chunk.heading_path))))
    return sum(v for w, v in terms.items() if stem_in(w, found)) / sum(terms.values())


def _says_what_is_asked(plan: QueryPlan, terms: dict[str, float], chosen: list[Evidence]) -> bool:
    """A factual answer names what the question asks about, and also says something of what
    it asks ("who directed X?" is not answered by a sentence that only mentions X): one of
    the question's words that are not names, when it has such words, is in the quoted text."""
    names = _names(plan)
    asked = [w for w in terms if w not in names]
    if not asked:
        return True
    found = set().union(*(set(content_words(e.text)) for e in chosen))
    return any(stem_in(w, found) for w in asked)


def _unknown_name(plan: QueryPlan, keyword: KeywordIndex | None, scope: Sequence[tuple[int, int]] | None) -> bool:
    """The question names something (a country, a dataset, a prize) that the papers in scope
    never mention: whatever else they say, they do not answer a question about it."""
    topic = set(content_words(plan.topic))
    names = [w for w in _names(plan) if len(w) >= 3 and w in topic]
    if not names or keyword is None:
        return False
    if scope:
        return bool(set(names) - keyword.used_within(names, scope))
    unseen = keyword.idf([_UNSEEN])[_UNSEEN]
    return any(v >= unseen for v in keyword.idf(names).values())


def _names(plan: QueryPlan) -> set[str]:
    return set(content_words(" ".join(_NAME.findall(plan.question))))
