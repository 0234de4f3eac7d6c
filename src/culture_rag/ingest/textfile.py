"""Reading plain text and Markdown papers: the bytes decoded whatever their encoding, Markdown's
markup dropped, the text cleaned (cleaning.py) and its lines classified into regions
(regions.py), Markdown's `#` headings included.
"""

from __future__ import annotations

import re

from culture_rag.errors import IngestError
from culture_rag.ingest import regions as roles
from culture_rag.ingest.cleaning import clean_text
from culture_rag.ingest.parsed import Region, merge_spans


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _bom_encoding(data: bytes) -> str | None:
    return next((enc for bom, enc in _BOMS if data.startswith(bom)), None)  # UTF-32 first: its BOM starts like UTF-16's


def _utf16_without_bom(data: bytes) -> str | None:
    """Mostly-ASCII text saved as UTF-16 without a BOM: every other byte is NUL and the others
    are printable ASCII. Binary data with many NULs matches the first half only."""
    sample = data[:8192]
    if len(sample) < 8 or len(data) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]

    def ascii_text(low: bytes) -> bool:
        return sum(32 <= b < 127 or b in (9, 10, 13) for b in low) >= 0.8 * len(low)

    if odd.count(0) > 0.4 * len(odd) and ascii_text(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and ascii_text(odd):
        return "utf-16-be"
    return None


# On a short text charset detection cannot tell the Latin code pages apart and picks by a noisy
# language guess (cp775 or cp1250: "naïve" read as "naďve"). Western text, which most non-UTF-8
# papers are, is cp1252: it wins whenever it decodes as cleanly as the guess.
_PREFERRED_WHEN_AS_CLEAN = ("cp1252", "latin_1", "iso8859_15")


def decode_text(where, data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16/32 by BOM, BOM-less UTF-16; anything else by charset detection."""
    encoding = _bom_encoding(data) or _utf16_without_bom(data)
    if encoding:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise IngestError(where, "encoding", f"broken {encoding.upper()} text ({exc.reason}); save it as UTF-8") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None or best.encoding is None:
        raise IngestError(where, "encoding", "binary data or an unknown text encoding; save the file as UTF-8")
    clean = [m for m in results if m.chaos <= best.chaos]
    chosen = next((m for enc in _PREFERRED_WHEN_AS_CLEAN for m in clean if m.encoding == enc), best)
    return str(chosen)


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def parse_text(where, data: bytes, markdown: bool, known: tuple[str, ...] = ()) -> tuple[str, list[Region]]:
    utf16 = _bom_encoding(data) or _utf16_without_bom(data)
    if b"\x00" in data[:4096] and not utf16 and data.count(b"\x00") > len(data) // 10:
        raise IngestError(where, "binary", "binary data, not text (NUL bytes); is it the right file?")
    text = decode_text(where, data)
    if markdown:
        text = _strip_markdown(text)
    text = clean_text(text.replace("\\$", "$"), join_lines=False)
    return _sections(text, markdown, known)


def _strip_markdown(text: str) -> str:
    text = re.sub(r"<sup>(.*?)</sup>", r"\1", text, flags=re.DOTALL)
    text = re.sub(r"<[^>\n]{1,200}>", "", text)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images: keep alt text, never the URL
    text = re.sub(r"\[([^\]]+)\]\((?:[^)]*)\)", r"\1", text)  # links: keep the words
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text


def _sections(text: str, markdown: bool, known: tuple[str, ...] = ()) -> tuple[str, list[Region]]:
    """Drop Markdown's `#` marks, classify the lines (regions.py) and record each span's heading
    chain and role."""
    out_lines, lines, starts = [], [], []
    pos = 0
    for raw in text.split("\n"):
        md = _MD_HEADING.match(raw) if markdown else None
        line = md.group(2).strip() if md else raw
        if line.strip():
            lines.append(roles.Line(line.strip(), md_level=len(md.group(1)) if md else None))
            starts.append(pos + len(line) - len(line.lstrip()))
        out_lines.append(line)
        pos += len(line) + 1
    cleaned = "\n".join(out_lines)
    labels = roles.classify(lines, known)
    paths = roles.heading_paths(labels)
    spans = [(start, start + len(ln.text), None, lb.role, path, False) for start, ln, lb, path in zip(starts, lines, labels, paths)]
    return cleaned, merge_spans(spans, len(cleaned), contiguous=True)
