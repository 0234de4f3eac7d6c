"""The words of a question and which of them are not its topic: word tokens (each in one
script), and the question, intent and paper-cue words that say what is asked rather than
what it is about. Paper names are read from these (naming.py): a title's words that only say
what is asked ("method", "results") name no paper."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from culture_rag.answer.language import script_of

TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Words that point at a paper rather than say what it is about.
CUE_WORDS = frozenset("paper papers study studies article articles report reports publication publications preprint et al".split())
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how do does did done is are was were be been being has have had can could "
    "would should may might must shall will please tell me us explain describe describes described discuss discusses "
    "discussed mention mentions mentioned say says said give gives given show shows shown present presents presented "
    "according main key major any some all each both about".split()
)
INTENT_WORDS = frozenset(
    "compare compares compared comparing comparison comparisons versus vs differ differs differed difference differences "
    "contrast similarity similarities author authors authored wrote written write writes affiliation affiliations "
    "affiliated authorship work summary summarize summarise summarized summarised overview gist idea "
    "contribution contributions contribute contributes novel novelty new propose proposes proposed "
    "conclude concludes concluded conclusion conclusions finding findings result results outcome outcomes takeaway "
    "takeaways find method methods methodology approach approaches procedure built build constructed construct "
    "created create collected made trained done designed conducted evaluated list enumerate name kinds kind types "
    "sorts".split()
)


@dataclass(frozen=True)
class Token:
    text: str  # as written, possessive dropped
    lower: str
    start: int
    first: bool  # the question's first word, capitalized whatever it is


def tokens(question: str) -> list[Token]:
    """Word tokens, each in one script: "BERT论文" is "BERT" then "论文"."""
    out = []
    for match in TOKEN.finditer(question):
        for _, run in groupby(enumerate(match.group()), key=lambda item: script_of(item[1])):
            run = list(run)
            text = "".join(ch for _, ch in run)
            out.append(Token(text, text.lower(), match.start() + run[0][0], not out))
    # "Liu's": the tokenizer stops at the apostrophe; the lone "s" after it is no word.
    return [t for t in out if not (t.lower == "s" and question[t.start - 1 : t.start] in "'’")]
