"""What a PDF page's fonts say about its structure, from PDFium's per-character font data.

- Run-in headings: a paragraph that opens with a few bold words and goes on in the body font on
  the same line ("**Training data** We train the model on ..."), LaTeX's \\paragraph.
  Their words name what the paragraph is about, which no numbering pattern finds.
- The title: the first page's lines in its largest font.
"""

from __future__ import annotations

import ctypes
import re

BOLD_WEIGHT = 600  # PDFium's weight of a bold face: 700; 400-500 regular; -1 unknown
# When a font states no weight, its name says it: Helvetica-Bold, NimbusRomNo9L-Medi, CMBX10.
_BOLD_NAME = re.compile(r"bold|medi|semibold|demi|black|heavy|cmbx", re.IGNORECASE)
_JOINING = re.compile(r"\b(for|of|and|in|on|with|the|a|an|to|by|from)$", re.IGNORECASE)
MAX_HEAD_WORDS = 8
TITLE_OVER_BODY = 1.2  # a title's font is at least this much larger than the body's


def page_chars(textpage) -> str:
    """The page's characters, one per PDFium char index (generated line breaks included)."""
    import pypdfium2.raw as raw

    return "".join(chr(raw.FPDFText_GetUnicode(textpage, i)) for i in range(textpage.count_chars()))


def _lines(chars: str) -> list[tuple[int, int]]:
    """(start, end) char indices of each non-empty line."""
    out, start = [], 0
    for i, ch in enumerate(chars + "\n"):
        if ch in "\r\n":
            if i > start:
                out.append((start, i))
            start = i + 1
    return out


def run_in_heads(textpage, chars: str) -> tuple[str, ...]:
    """The bold words that open a line and run into body text on it. A head starts with a
    capital, has at most MAX_HEAD_WORDS words and does not end on a joining word; the text after
    it starts with a capital (a bold subject running on in lowercase, "**Our model** is ...", or a
    bold drop cap, is no heading)."""
    import pypdfium2.raw as raw

    name = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()

    def bold(i: int) -> bool:
        weight = raw.FPDFText_GetFontWeight(textpage, i)
        if weight > 0:
            return weight >= BOLD_WEIGHT
        raw.FPDFText_GetFontInfo(textpage, i, name, len(name), ctypes.byref(flags))
        return bool(_BOLD_NAME.search(name.value.decode("latin-1")))

    heads = []
    for start, end in _lines(chars):
        if not chars[start].isupper() or not bold(start):
            continue
        j = start
        while j < end and (chars[j].isspace() or bold(j)):
            j += 1
        head, rest = chars[start:j].strip(), chars[j:end].lstrip()
        words = head.split()
        if rest[:1].isupper() and 1 <= len(words) <= MAX_HEAD_WORDS and re.search(r"[A-Za-z]{2}", head) and not _JOINING.search(head):
            heads.append(head)
    return tuple(heads)


def largest_font_lines(textpage, chars: str) -> tuple[str, ...]:
    """The first run of consecutive lines in the page's largest upright font, when that font is
    larger than the body's (the size most characters are set in): a title broken over two or
    three lines. A line's size and angle are its first letter's; the rotated arXiv stamp in the
    margin, often the largest text of a first page, is not upright."""
    import math
    from collections import Counter

    import pypdfium2.raw as raw

    sized, weight = [], Counter()
    for start, end in _lines(chars):
        first = next((i for i in range(start, end) if chars[i].isalnum()), None)
        if first is None:
            continue
        size = round(raw.FPDFText_GetFontSize(textpage, first), 1)
        weight[size] += end - start
        angle = raw.FPDFText_GetCharAngle(textpage, first) % (2 * math.pi)
        if min(angle, 2 * math.pi - angle) < 0.01:
            sized.append((size, chars[start:end].strip()))
    if not sized:
        return ()
    body = weight.most_common(1)[0][0]
    top = max(size for size, _ in sized)
    if top < body * TITLE_OVER_BODY:
        return ()
    at = next(i for i, (size, _) in enumerate(sized) if size == top)
    out = []
    for size, text in sized[at:]:
        if size != top:
            break
        out.append(text)
    return tuple(out)
