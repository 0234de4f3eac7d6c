"""A question read in its conversation: a follow-up ("and what about Belarus?", "why is that?")
searched with the question before it, and the notices that tell the reader how a question was
read (translated, or joined to the one before)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from culture_rag.answer.naming import resolve_papers
from culture_rag.answer.translation import LANGUAGE_NAMES, Translation


def language_notice(translation: Translation, answered: bool) -> str:
    """Says that a question was translated, into what, and in which language the quotes are."""
    if translation.source_language == "en":
        return ""
    name = LANGUAGE_NAMES.get(translation.source_language, "another language")
    quotes = " The quotes are in English, the papers' language." if answered else ""
    return f"Asked in {name}; searched in English as “{translation.english}” ({translation.ms / 1000:.1f} s).{quotes}"


_CONNECTIVE = re.compile(r"^(and|but|also|so|then|what about|how about)\b", re.I)
_BACK_REFERENCE = re.compile(r"\b(it|its|they|their|them|this|that|these|those|there|he|she|his|her)\b", re.I)


def retrieval_query(question: str, history: Sequence[str]) -> str:
    """A follow-up ("and what about Belarus?", "why is that?") is searched together with the
    question before it. A self-contained question is searched alone, short or not."""
    follows = _CONNECTIVE.search(question) or (len(question.split()) <= 5 and _BACK_REFERENCE.search(question))
    if history and follows:
        return f"{history[-1]} {question}"
    return question


def follow_up_notice(asked: str, searched: str, translation: Translation) -> str:
    """Says how a follow-up was read, so that the reader can tell what was answered."""
    if translation.source_language != "en" or searched == asked:
        return ""  # a translated question's notice says what was searched
    return f"Read with the question before as “{searched}”."


_ELLIPSIS = re.compile(r"^\s*(?:(?:and|but|so)\s+)?(?:what|how)\s+about\s+(?P<rest>.+?)\s*[?.!]*\s*$", re.I)


def follow_up_question(question: str, history: Sequence[str], papers: Sequence = ()) -> str:
    """"What about Belarus?" after "What does Mao conclude?" is "What does Mao conclude about
    Belarus?": the question before, of something else, with its papers and its intent; "How
    about HellaSwag?" after "What are the contributions of the BERT paper?" names another
    paper, which takes the place of the one named before. Other questions are themselves."""
    match = _ELLIPSIS.match(question)
    if not history or not match:
        return question
    rest, before = match.group("rest"), history[-1].strip().rstrip("?.! ")
    named = resolve_papers(before, papers).names
    if named and resolve_papers(f"What does {rest} say?", papers).papers and named[0] in before and named[-1] in before:
        start, end = before.index(named[0]), before.rindex(named[-1]) + len(named[-1])
        return f"{before[:start]}{rest}{before[end:]}?"
    return re.sub(r"\s+about\s+.*$", "", before, flags=re.I) + f" about {rest}?"
