"""The library's filters: papers chosen by author, year and title words, for the Library view and
for scoping a question to part of the library (`Assistant.ask(q, papers=[ids])`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from culture_rag.errors import QueryError
from culture_rag.types import PaperInfo


@dataclass(frozen=True)
class YearRange:
    first: int | None  # None: open
    last: int | None

    def __contains__(self, year: int | None) -> bool:
        return year is not None and (self.first is None or year >= self.first) and (self.last is None or year <= self.last)


_RANGE = re.compile(r"^\s*(\d{4})?\s*(?:(-|–|\.\.)\s*(\d{4})?)?\s*$")


def parse_years(text: str | int) -> YearRange:
    """"2019" (that year), "2018-2021" (inclusive), "2018-" or "-2021" (open). A QueryError
    names the value otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        return YearRange(text, text)
    found = _RANGE.match(str(text))
    if not found or not (found.group(1) or found.group(3)):
        raise QueryError(f"year {text!r}: give a year (2019) or a range (2018-2021, 2018-, -2021)")
    first = int(found.group(1)) if found.group(1) else None
    last = int(found.group(3)) if found.group(3) else (first if not found.group(2) else None)
    if first is not None and last is not None and first > last:
        raise QueryError(f"year {text!r}: the range ends before it starts; write it as {last}-{first}")
    return YearRange(first, last)


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: "Zürich" matches "zurich"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", _fold(text))


def _prefixes(wanted: list[str], words: list[str]) -> bool:
    return all(any(w.startswith(q) for w in words) for q in wanted)


def _author_matches(wanted: list[str], authors: Iterable[str]) -> bool:
    """Every word given begins a word of one author's name: "mao", "Yuqi Mao", "Devl" match
    "Yuqi Mao" and "Jacob Devlin"; "ao" matches neither."""
    return any(_prefixes(wanted, _words(name)) for name in authors)


def select_papers(
    papers: Iterable[PaperInfo],
    author: str | None = None,
    year: str | int | None = None,
    title: str | None = None,
) -> list[PaperInfo]:
    """The papers that match every filter given, in the order given. `author`: words of one
    author's name; `year`: a year or a range (parse_years), papers without a year never match;
    `title`: words that all begin words of the title, in any order ("transformer" finds
    "Transformers"). Case and accents are ignored throughout."""
    years = parse_years(year) if year not in (None, "") else None
    author_words = _words(author) if author else []
    title_words = _words(title) if title else []
    out = []
    for paper in papers:
        if years is not None and paper.year not in years:
            continue
        if author_words and not _author_matches(author_words, paper.authors):
            continue
        if title_words and not _prefixes(title_words, _words(paper.title)):
            continue
        out.append(paper)
    return out
