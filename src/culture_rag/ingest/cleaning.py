"""Cleaning extracted text, and telling whether any text is there at all.

Both readers (pdfpaper.py, textfile.py) clean with `clean_text`; sourcemap.py repeats its
steps one by one to trace each character back to the page, so the patterns are shared with it.
OCR (ocr.py) and the no-text check count word characters the same way (`word_chars`).
"""

from __future__ import annotations

import re
import unicodedata

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffe]")
HYPHEN_BREAK = re.compile(r"([a-z])-[ \t]*\n[ \t]*([a-z])")
SPACES = re.compile(r"[ \u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_WORD_CHAR = re.compile(r"\w")


def clean_text(text: str, join_lines: bool) -> str:
    """Fold the extraction noise that hurts matching: ligatures, control characters, words
    hyphenated across lines, runs of spaces. `join_lines` turns layout line breaks (PDF)
    into spaces while keeping blank-line paragraph breaks."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    text = HYPHEN_BREAK.sub(r"\1\2", text)
    if join_lines:
        text = re.sub(r"[ \t]*\n[ \t]*(?!\n)", " ", text)
    text = SPACES.sub(" ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def word_chars(text: str) -> int:
    return len(_WORD_CHAR.findall(text))


def has_real_text(text: str, min_word_chars: int = 20) -> bool:
    """Enough words to be worth indexing. Repeated lines count once: a scan whose only text layer
    is a stamp or label on every page ("Background", "CONFIDENTIAL") has no text to search."""
    seen: set[str] = set()
    found = 0
    for line in text.split("\n"):
        line = line.strip()
        if line not in seen:
            seen.add(line)
            found += word_chars(line)
            if found >= min_word_chars:
                return True  # a paper's first lines decide; the whole text is not scanned
    return False
