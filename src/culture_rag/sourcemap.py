"""Where each character of a PDF paper's text comes from: PDFium character indices.

papers.py cleans PDFium's page text (`clean_text`) and joins the layout lines into the paper's
text. To show a quote on its page the index keeps, per line of the paper text, three integers:
its offset in the paper text, its page and the PDFium char index of its first character
(`line_anchors`). At view time the page's text is cleaned again, this time tracing each output
character to the char index it came from (`clean_traced`); the anchor finds the line in that
traced text, and any offset of the line maps to its characters (`quote_chars`). Both sides check
that the traced text equals what was indexed, so a mapping is exact or reported as not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ANCHOR_COLUMNS = 3  # paper offset, page (1-based), PDFium char index of the line's first character


@dataclass(frozen=True)
class Traced:
    """Cleaned page text and, per character, the PDFium char index it comes from (-1: none)."""

    text: str
    chars: list[int]

    def first_positions(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for pos, char in enumerate(self.chars):
            out.setdefault(char, pos)
        return out


def _nfkc(text: str, src: list[int]) -> tuple[str, list[int]]:
    """NFKC per base character and its combining marks, each output character traced to the base."""
    if text.isascii():
        return text, src
    out: list[str] = []
    out_src: list[int] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or not unicodedata.combining(text[i]):
            piece = unicodedata.normalize("NFKC", text[start:i])
            out.append(piece)
            out_src.extend([src[start]] * len(piece))
            start = i
    return "".join(out), out_src


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
    """`papers.clean_text(text, join_lines=False)`, step by step, keeping each character's source."""
    from .papers import _CONTROL, _HYPHEN_BREAK, _SPACES

    t, s = _nfkc(text, list(chars))
    t, s = _resub(t, s, re.compile(r"\r\n?"), lambda m: [("\n", m.end() - 1)])
    t, s = _resub(t, s, _CONTROL, lambda m: [])
    t, s = _resub(t, s, _HYPHEN_BREAK, lambda m: [(m[1], m.start(1)), (m[2], m.start(2))])
    t, s = _resub(t, s, _SPACES, lambda m: [(" ", m.start())])
    t, s = _resub(t, s, re.compile(r" *\n *"), lambda m: [("\n", m.start() + m[0].index("\n"))])
    t, s = _resub(t, s, re.compile(r"\n{3,}"), lambda m: [("\n", m.start()), ("\n", m.start() + 1)])
    lead = len(t) - len(t.lstrip())
    stop = len(t.rstrip())
    return Traced(t[lead:stop], s[lead:stop])


def line_anchors(
    traces: list[tuple[str, list[int]] | None],
    raw_pages: tuple[str, ...],
    cleaned: list[str],
    kept: list[list[int]],
    text: str,
) -> np.ndarray:
    """(paper offset, page, char index) of each paper-text line whose page traces exactly.

    `cleaned` are the pages after clean_text, `kept[p]` the indices of their lines that survive
    the running-line filter, `text` the joined paper text, in which those lines stand in order."""
    from .papers import clean_text

    rows: list[tuple[int, int, int]] = []
    cursor = 0
    for number, page in enumerate(cleaned):
        trace = traces[number] if number < len(traces) else None
        traced = None
        if trace is not None and trace[0] == raw_pages[number]:
            traced = clean_traced(*trace)
            if traced.text != clean_text(raw_pages[number], join_lines=False) or traced.text != page:
                traced = None  # another reader's text, or a cleaning step this tracer does not mirror
        lines = page.split("\n")
        offsets = np.cumsum([0] + [len(ln) + 1 for ln in lines]).tolist()
        for i in kept[number]:
            line = lines[i].strip()
            if not line:
                continue
            at = text.find(line, cursor)
            if at < 0:
                return np.zeros((0, ANCHOR_COLUMNS), np.int32)  # the joining changed; no anchors rather than wrong ones
            cursor = at + len(line)
            start = offsets[i] + len(lines[i]) - len(lines[i].lstrip())
            if traced is not None and traced.chars[start] >= 0:
                rows.append((at, number + 1, traced.chars[start]))
    return np.asarray(rows, np.int32).reshape(-1, ANCHOR_COLUMNS)


@dataclass(frozen=True)
class QuoteChars:
    """The PDFium char indices of a quote's characters, page by page."""

    by_page: dict[int, list[int]]
    exact: bool  # every non-space character of the quote was traced to the text it was indexed from


def quote_chars(anchors: np.ndarray, start: int, end: int, quote: str, trace: Callable[[int], Traced | None]) -> QuoteChars:
    """Char indices of paper text [start, end) (`quote` is that text), via the lines' anchors;
    `trace(page)` gives a page's traced text."""
    offsets = anchors[:, 0]
    first = max(0, int(np.searchsorted(offsets, start, side="right")) - 1)
    by_page: dict[int, list[int]] = {}
    covered = [False] * len(quote)
    exact = True
    positions: dict[int, dict[int, int]] = {}
    for row in range(first, len(anchors)):
        at, page, char = (int(v) for v in anchors[row])
        if at >= end:
            break
        traced = trace(page)
        if traced is None:
            exact = False
            continue
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
        for c in traced.chars[q + a - at : q + b - at]:
            if c >= 0 and (not found or c != found[-1]):
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


def anchor_page(anchors: np.ndarray, pos: int) -> int | None:
    """The page of the line `pos` falls in."""
    i = int(np.searchsorted(anchors[:, 0], pos, side="right")) - 1
    return int(anchors[i, 1]) if i >= 0 else None
