"""Where each character of a PDF paper's text comes from: PDFium character indices.

pdfpaper.py cleans PDFium's page text (cleaning.clean_text) and joins its lines into the
paper's text. To show a quote on its page the index keeps, per line of the paper text, three
integers: its offset in the paper text, its page, and the offset of its first character in
PDFium's text of that page (`line_anchors`). At view time the page's text is read again with each character's
PDFium char index (pdf.page_char_trace) and cleaned again, tracing each output character to the
page-text offset it came from (`clean_traced`); the anchor finds the line there, and every
offset of the line maps to its characters (`quote_chars`). The traced text must equal the
indexed text, at indexing and at view time, so a mapping is exact or reported as not.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from culture_rag.ingest.cleaning import CONTROL, HYPHEN_BREAK, SPACES

# No numpy: papers.py calls line_anchors in the PDF parser's process, which starts without it.


@dataclass(frozen=True)
class Traced:
    """Cleaned text and, per character, the position it comes from in the text it was cleaned
    from (or whatever that position was traced to)."""

    text: str
    chars: list[int]

    def first_positions(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for pos, char in enumerate(self.chars):
            out.setdefault(char, pos)
        return out


_NON_ASCII = re.compile(r"[\x00-\x7f]?[^\x00-\x7f]+")  # with the ASCII base a combining mark may compose with


def _nfkc(text: str, src: list[int]) -> tuple[str, list[int]]:
    """NFKC per base character and its combining marks, each output character traced to the base."""
    if unicodedata.is_normalized("NFKC", text):
        return text, src
    return _resub(text, src, _NON_ASCII, _nfkc_pieces)


def _nfkc_pieces(m: re.Match) -> list[tuple[str, int]]:
    text, out, start = m.string, [], m.start()
    for i in range(m.start() + 1, m.end() + 1):
        if i == m.end() or not unicodedata.combining(text[i]):
            out.extend((ch, start) for ch in unicodedata.normalize("NFKC", text[start:i]))
            start = i
    return out


def _resub(text: str, src: list[int], pattern: re.Pattern, pieces: Callable[[re.Match], list[tuple[str, int]]]):
    """`pattern.sub` whose replacement is built of (character, position in `text`) pairs."""
    out: list[str] = []
    out_src: list[int] = []
    last = 0
    for m in pattern.finditer(text):
        out.append(text[last : m.start()])
        out_src.extend(src[last : m.start()])
        for ch, pos in pieces(m):
            out.append(ch)
            out_src.append(src[pos])
        last = m.end()
    out.append(text[last:])
    out_src.extend(src[last:])
    return "".join(out), out_src


def clean_traced(text: str, chars: list[int]) -> Traced:
    """`cleaning.clean_text(text, join_lines=False)`, step by step, keeping each character's source."""
    t, s = _nfkc(text, list(chars))
    t, s = _resub(t, s, re.compile(r"\r\n?"), lambda m: [("\n", m.end() - 1)])
    t, s = _resub(t, s, CONTROL, lambda m: [])
    t, s = _resub(t, s, HYPHEN_BREAK, lambda m: [(m[1], m.start(1)), (m[2], m.start(2))])
    # only the runs SPACES.sub(" ") changes: two or more, or one that is not " " (most are one " ")
    spaces = re.compile(f"{SPACES.pattern[:-1]}{{2,}}|(?! ){SPACES.pattern[:-1]}")
    t, s = _resub(t, s, spaces, lambda m: [(" ", m.start())])
    t, s = _resub(t, s, re.compile(r" *\n *"), lambda m: [("\n", m.start() + m[0].index("\n"))])
    t, s = _resub(t, s, re.compile(r"\n{3,}"), lambda m: [("\n", m.start()), ("\n", m.start() + 1)])
    lead = len(t) - len(t.lstrip())
    stop = len(t.rstrip())
    return Traced(t[lead:stop], s[lead:stop])


def line_anchors(raw_pages: tuple[str, ...], cleaned: list[str], kept: list[list[int]], text: str) -> list[tuple[int, int, int]]:
    """(paper offset, page, page-text offset) of each line of the paper's `text`.

    `raw_pages` is PDFium's text of each page, `cleaned` the pages after clean_text, `kept[p]`
    the indices of their lines that survive the running-line filter, `text` the joined paper
    text, in which those lines stand in order. A page whose cleaning this module does not
    mirror gets no anchors."""
    rows: list[tuple[int, int, int]] = []
    cursor = 0
    for number, page in enumerate(cleaned):
        traced = clean_traced(raw_pages[number], range(len(raw_pages[number])))
        exact = traced.text == page
        lines = page.split("\n")
        offsets = list(accumulate((len(ln) + 1 for ln in lines), initial=0))
        for i in kept[number]:
            line = lines[i].strip()
            if not line:
                continue
            at = _find_line(text, line, cursor)
            if at < 0:
                return []  # the joining changed; no anchors rather than wrong ones
            cursor = at + len(line)
            if exact:
                rows.append((at, number + 1, traced.chars[offsets[i] + len(lines[i]) - len(lines[i].lstrip())]))
    return rows


def _find_line(text: str, line: str, cursor: int) -> int:
    """Where layout `line` stands in the paper text from `cursor`: next, maybe with the line break
    a run-in heading ends in (pdfpaper._join_pages) in place of one of its spaces, else anywhere."""
    window = text[cursor : cursor + len(line) + 4].replace("\n", " ")
    near = window.find(line)
    return cursor + near if near >= 0 else text.find(line, cursor)


@dataclass(frozen=True)
class QuoteChars:
    """The PDFium char indices of a quote's characters, page by page."""

    by_page: dict[int, list[int]]
    exact: bool  # every non-space character of the quote was traced to the text it was indexed from


PageTrace = tuple[Traced, list[int]]  # a page's cleaned text traced to page-text offsets; each offset's char index


def quote_chars(anchors: Sequence[Sequence[int]], start: int, end: int, quote: str, trace: Callable[[int], PageTrace | None]) -> QuoteChars:
    """Char indices of paper text [start, end) (`quote` is that text), via the lines' anchors;
    `trace(page)` gives the page's traced text and the char index of each page-text offset."""
    first = max(0, bisect.bisect_right([row[0] for row in anchors], start) - 1)
    by_page: dict[int, list[int]] = {}
    covered = [False] * len(quote)
    exact = True
    positions: dict[int, dict[int, int]] = {}
    for row in range(first, len(anchors)):
        at, page, char = anchors[row]
        if at >= end:
            break
        page_trace = trace(page)
        if page_trace is None:
            exact = False
            continue
        traced, char_of = page_trace
        if page not in positions:
            positions[page] = traced.first_positions()
        q = positions[page].get(char)
        if q is None:
            exact = False
            continue
        stop = traced.text.find("\n", q)
        length = (stop if stop >= 0 else len(traced.text)) - q
        a, b = max(start, at), min(end, at + length)
        if a >= b:
            continue
        if traced.text[q + a - at : q + b - at] != quote[a - start : b - start]:
            exact = False  # the file reads differently now (another PDFium?): no boxes from this line
            continue
        covered[a - start : b - start] = [True] * (b - a)
        found = by_page.setdefault(page, [])
        for offset in traced.chars[q + a - at : q + b - at]:
            c = char_of[offset] if 0 <= offset < len(char_of) else -1
            if c < 0:
                exact = False
            elif not found or c != found[-1]:
                found.append(c)
    if any(not seen and not ch.isspace() for seen, ch in zip(covered, quote)):
        exact = False
    return QuoteChars({p: sorted(set(c)) for p, c in by_page.items()}, exact)


def runs(chars: list[int]) -> list[tuple[int, int]]:
    """Sorted char indices as (first, count) runs of consecutive indices."""
    out: list[tuple[int, int]] = []
    for c in chars:
        if out and c == out[-1][0] + out[-1][1]:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((c, 1))
    return out
