"""Which language a question is written in, told by its script, and the script of a character
(a question's words are split where the script changes: words.tokens)."""

from __future__ import annotations

from collections import Counter

# Unicode blocks of the scripts a question may be written in, and the language a script
# stands for here (the translation step downstream needs a language, not a script).
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "el"),
    (0x0400, 0x052F, "ru"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"), (0x0750, 0x077F, "ar"),
    (0x0900, 0x097F, "hi"),
    (0x0E00, 0x0E7F, "th"),
    (0x1100, 0x11FF, "ko"), (0xAC00, 0xD7AF, "ko"),
    (0x3040, 0x30FF, "ja"),
    (0x3400, 0x4DBF, "zh"), (0x4E00, 0x9FFF, "zh"), (0xF900, 0xFAFF, "zh"), (0x20000, 0x2FA1F, "zh"),
)


def script_of(ch: str) -> str:
    code = ord(ch)
    for low, high, language in _SCRIPTS:
        if low <= code <= high:
            return language
    return "en"  # Latin and everything else unlisted


def detect_language(text: str) -> str:
    """The language of the script most of the letters are in ("en" for Latin). Han with any
    kana is Japanese. Names such as "BERT" in a Chinese question do not outvote it."""
    counts = Counter(script_of(ch) for ch in text if ch.isalpha())
    if not counts:
        return "en"
    if counts["ja"] and counts["ja"] + counts["zh"] >= max(counts.values()):
        return "ja"
    language, n = counts.most_common(1)[0]
    return language if n > counts["en"] or language == "en" else "en"
