"""A candidate sentence as an answer shows and cites it: table rows read with their headers,
a sentence that opens with a pronoun together with the one it refers back to, the paper's own
"[1]" shown as "(ref. 1)", and what is never quoted (headings, captions, references, fragments)."""

from __future__ import annotations

import re

from culture_rag.answer.citations import is_instruction
from culture_rag.index.lexical import content_words
from culture_rag.ingest import regions as roles
from culture_rag.ingest.chunking import table_row_text
from culture_rag.types import Chunk, Span

# Roles (chunking.Span.role) whose text is never an answer: the reader wants the paper's
# statements, not its headings, captions, bibliography or page furniture.
NEVER_QUOTED = frozenset({roles.HEADING, roles.CAPTION, roles.REFERENCE, roles.BOILERPLATE, roles.FIGURE})

_ROADMAP = re.compile(
    r"^\s*(in )?sections? \d|\b(is|are) organi[sz]ed as follows\b|\bthe rest of (the|this) (paper|article)\b"
    r"|\b(discussed|described|presented|elaborated|introduced|detailed|given) in sections? \d"
    r"|^\s*(more |further )?details (can be|are) (found|given|provided)\b"
    r"|^\s*in the following\b|\bin the following\s*[.:]?\s*$|^\s*in this (sub)?section\b.{0,40}\bdetails\b",
    re.I,
)
_KEYWORDS_LINE = re.compile(r"^\W*(key ?words|index terms)\W", re.I)


def _mostly_numbers(text: str) -> bool:
    tokens = text.split()
    return sum(not re.search(r"[^\W\d_]", t) for t in tokens) * 2 >= len(tokens)  # tokens without a letter


# A paper's own numbered references ("[1]", "[6-8]", "[9, 10]") inside a sentence it says.
_OWN_REFERENCE = re.compile(r"\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\]")


def _own_references(text: str) -> str:
    """The paper's "[1]" shown as "(ref. 1)": in an answer, "[n]" is only ever our citation of
    source n, and a reader clicking the paper's "[1]" would open our first source instead."""
    return _OWN_REFERENCE.sub(lambda m: f"(ref. {m.group(1)})", text)


def answer_text_of(chunk: Chunk, index: int) -> str | None:
    """A sentence as the answer shows it, its own numbered references as "(ref. n)": see
    `_answer_text_of`."""
    text = _answer_text_of(chunk, index)
    return _own_references(text) if text else text


def _answer_text_of(chunk: Chunk, index: int) -> str | None:
    """A sentence as the answer shows it: table rows read with their header, a sentence that
    opens with a pronoun together with the sentence it refers back to. None for headings,
    table headers and fragments, which are not answers."""
    span = chunk.sentences[index]
    raw = chunk.sentence_text(span)
    if "\t" in raw:
        row = table_row_text(chunk, index)
        if not row or ":" not in row and _mostly_numbers(raw.replace("\t", " ")):
            return None  # a header, or figures without the names of their columns
        return tidy(row)
    if _KEYWORDS_LINE.match(raw):
        return None  # a paper's keywords are a list of topics, not a statement
    if _mostly_numbers(raw):
        return None  # a row of figures torn from its table says nothing on its own
    if raw[:1].islower():
        return None  # the tail of a sentence cut by the layout, not a sentence
    if raw.rstrip().endswith("?") or _ROADMAP.search(raw):
        return None  # a question the paper asks, or a pointer to where it says things: not a statement
    if len(content_words(raw)) < 3 or is_instruction(raw):
        return None
    if _leans_back(raw):
        if index == 0:
            return None  # "He is ..." without its antecedent; the overlapping chunk before has both
        return tidy(chunk.sentence_text(chunk.sentences[index - 1])) + " " + tidy(raw)
    return tidy(raw)


def quote_span(chunk: Chunk, index: int) -> Span:
    """The exact span a citation quotes: the sentence, plus the one before when it leans back."""
    span = chunk.sentences[index]
    raw = chunk.sentence_text(span)
    if index > 0 and "\t" not in raw and _leans_back(raw):
        return Span(chunk.sentences[index - 1].start, span.end, chunk.sentences[index - 1].page)
    return span


def _leans_back(sentence: str) -> bool:
    """Opens with a pronoun, or is a bare line such as a job title under a name."""
    return bool(re.match(r"(He|She|It|They|This|These|Those|Its|Their|His|Her)\b", sentence)) or len(sentence.split()) <= 6


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if re.search(r"[.!?:;)\]\"”]$", text) else text + "."
