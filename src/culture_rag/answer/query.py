"""Understanding a question before retrieval: the QueryPlan the later stages read. It puts
together which papers the question names (naming.py), what kind of answer it asks for and
where in a paper that answer is expected (intents.py), the section, table or figure it names,
its topic (what to search for inside the papers) and its language (language.py). Matching the
plan against a paper's headings and captions is headings.py's.

Plain rules over the index's paper metadata (titles, authors, file names): nothing here knows
any particular paper. Words are compared as the keyword index sees them (lexical.content_words:
bm25s's stop words, PyStemmer's English stemmer), names as whole tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from culture_rag.answer.intents import (
    SECTIONS, WHOLE_PAPER, asks_number, comparison_sides, defined_term, detect_intent, listed_noun, open_comparison,
)
from culture_rag.answer.language import detect_language
from culture_rag.answer.naming import Reference, resolve_papers
from culture_rag.answer.words import CUE_WORDS, INTENT_WORDS, QUESTION_WORDS, tokens
from culture_rag.index.lexical import content_words
from culture_rag.types import PaperInfo


@dataclass(frozen=True)
class QueryPlan:
    question: str
    papers: tuple[str, ...]  # paper ids the question names, in library order; () for the whole library
    intent: str  # one of INTENTS
    sections: tuple[str, ...]  # heading words where the answer is expected
    topic: str  # the question without its paper references, question and intent words
    comparison_sides: tuple[str, ...] = ()  # ("Belarus", "China") for "how does Belarus compare with China?"
    names: tuple[str, ...] = ()  # the words, as written, that named `papers` ("BERT", "Shang", "Liu")
    author_names: tuple[str, ...] = ()  # those that are surnames ("Mao" in "Mao's paper")
    wants_number: bool = False  # "how many ...?", "what percentage ...?": the answer holds a figure
    defines: str = ""  # "What is knowledge distillation?" -> "knowledge distillation"
    listed: str = ""  # the plural noun a list asks for: "challenges" in "what are the main challenges ...?"
    section_ref: str = ""  # a section the question names: "3.2" ("section 3.2"), "introduction"
    caption_ref: str = ""  # a table or figure the question names: "table 2", "figure 3"
    language: str = "en"  # "en", "zh", "ru", ... by script

    @property
    def topic_words(self) -> list[str]:
        """The topic's stemmed content words, as the keyword index sees them."""
        return content_words(self.topic)


def plan_question(question: str, papers: Sequence[PaperInfo]) -> QueryPlan:
    """Read a question against the library's papers: see QueryPlan."""
    reference = resolve_papers(question, papers)
    intent = detect_intent(question)
    topic = _topic(question, reference)
    sections = SECTIONS[intent]
    if intent == "summary" and not content_words(topic):
        sections = WHOLE_PAPER
    sides = comparison_sides(question) if intent == "comparison" else ()
    if intent == "comparison" and not sides and len(reference.names) >= 2:
        sides = reference.names[:2]
    if intent == "comparison" and not sides and listed_noun(question) and open_comparison(question):
        intent, sections = "list", SECTIONS["list"]  # "which baselines does PAL compare against?" lists them
    caption_ref, topic = _caption_reference(question, topic)
    section_ref, topic = _section_reference(question, topic)
    if caption_ref and intent in ("fact", "summary", "list", "conclusion"):
        intent, sections = "summary", ()  # what a table holds or a figure shows: read from it
    if section_ref and intent in ("fact", "summary", "method", "contribution"):
        intent, sections = "summary", (section_ref,)  # what a section says is read from it
    elif section_ref:
        sections = (section_ref, *sections)
    defines = defined_term(question) if intent == "fact" else ""
    if defines and defines.lower() in {n.lower() for n in reference.names}:
        intent, sections, defines = "summary", WHOLE_PAPER, ""  # "What is PAL?" of the PAL paper: its summary
    return QueryPlan(
        question=question,
        papers=reference.papers,
        intent=intent,
        sections=sections,
        topic=topic,
        comparison_sides=sides,
        names=reference.names,
        author_names=reference.author_names,
        wants_number=asks_number(question),
        defines=defines,
        listed=listed_noun(question),
        section_ref=section_ref,
        caption_ref=caption_ref,
        language=detect_language(question),
    )


# "section 3.2", "§3", "the introduction of", "the related work section": a section by number or name.
_SECTION_REF = re.compile(
    r"(?:\b(?:section|sec\.|chapter)\s*|§\s*)(?P<number>\d+(?:\.\d+)*)\b"
    r"|\b(?:the\s+)?(?P<name>introduction|background|related work|literature review|methodology|methods"
    r"|experimental setup|experiments|results|discussion|conclusions?|abstract|appendix|evaluation)"
    r"(?:\s+section)?\s+(?:of|in)\b"
    r"|\b(?:the\s+)?(?P<named>introduction|background|related work|literature review|methodology|methods"
    r"|experimental setup|experiments|results|discussion|conclusions?|abstract|appendix|evaluation)\s+section\b",
    re.I,
)


_CAPTION_REF = re.compile(r"\b(?P<kind>table|tab\.|figure|fig\.)\s*(?P<number>\d+)\b", re.I)


def _caption_reference(question: str, topic: str) -> tuple[str, str]:
    """The table or figure the question names ("table 2"), and the topic without it."""
    match = _CAPTION_REF.search(question)
    if not match:
        return "", topic
    kind = "table" if match.group("kind").lower().startswith("tab") else "figure"
    number = match.group("number")
    kept = [w for w in topic.split() if w.lower().rstrip(".") not in ("table", "tab", "figure", "fig") and w != number]
    return f"{kind} {number}", " ".join(kept)


def _section_reference(question: str, topic: str) -> tuple[str, str]:
    """The section the question names, by number or by name, and the topic without it."""
    match = _SECTION_REF.search(question)
    if not match:
        return "", topic
    ref = (match.group("number") or match.group("name") or match.group("named")).lower()
    drop = set(content_words(f"section sec chapter {ref}"))
    kept = [w for w in topic.split() if w.strip("§.") != ref and not set(content_words(w)) & drop]
    return ref, " ".join(kept)


def _topic(question: str, reference: Reference) -> str:
    """The question's own words, without the paper reference, question words and intent words:
    what to search for inside the papers."""
    kept = []
    for i, token in enumerate(tokens(question)):
        if i in reference.tokens:
            continue
        low = token.lower
        if low in QUESTION_WORDS or low in INTENT_WORDS or low in CUE_WORDS or not content_words(low) and token.text.isascii():
            continue
        kept.append(token.text)
    return " ".join(kept)
