"""Reading papers: PDF (with page numbers), plain text and Markdown (with section headings).

The output is a `Paper`: cleaned text plus the regions (pages or sections) that let every
character offset be traced back to a page or heading.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import pdf
from .errors import IngestError
from .pdf import PdfText

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES
METADATA_FILE = "papers.toml"


@dataclass(frozen=True)
class Region:
    """A span of a paper's cleaned text that sits on one page (PDF) or under one heading (text)."""

    start: int
    end: int
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class Paper:
    paper_id: str
    source: str  # file name, no folder
    title: str
    authors: tuple[str, ...]
    kind: str  # "pdf", "txt" or "md"
    text: str
    regions: tuple[Region, ...]
    content_hash: str  # sha256 of the file's bytes
    n_pages: int | None = None


@dataclass(frozen=True)
class PaperMeta:
    title: str | None = None
    authors: tuple[str, ...] = ()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paper_id_for(source: str) -> str:
    """A stable, typeable id from the file name: lowercase letters, digits and dashes."""
    stem = unicodedata.normalize("NFKD", Path(source).stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:80].strip("-")
    return slug or "paper-" + hashlib.sha256(source.encode()).hexdigest()[:8]


def read_metadata_file(folder: Path) -> dict[str, PaperMeta]:
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(path, "metadata", f"cannot read the metadata file: {exc}") from exc
    return {
        name: PaperMeta(title=entry.get("title"), authors=tuple(entry.get("authors", ())))
        for name, entry in raw.items()
        if isinstance(entry, dict)
    }


def read_paper(path: Path, password: str | None = None, meta: PaperMeta | None = None) -> Paper:
    """Read and clean one paper. Raises IngestError (naming the file) when it cannot be read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(path, "unsupported", f"unsupported file type {suffix!r}; use PDF, TXT or Markdown")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path, "unreadable", f"cannot read the file: {exc.strerror or exc}") from exc
    return parse_paper(path.name, data, password=password, meta=meta, display_path=path)


def parse_paper(
    source: str,
    data: bytes,
    password: str | None = None,
    meta: PaperMeta | None = None,
    display_path: Path | str | None = None,
) -> Paper:
    where = display_path or source
    if not data.strip():
        raise IngestError(where, "empty", "the file is empty; check that it was copied or downloaded completely")
    suffix = Path(source).suffix.lower()
    if suffix in PDF_SUFFIXES:
        text, regions, pdf_meta, first_page, n_pages = _parse_pdf(where, data, password)
        kind = "pdf"
    else:
        if data.startswith(b"%PDF-"):
            raise IngestError(where, "mismatch", "the file is a PDF but is named as text; rename it to .pdf")
        text, regions = _parse_text(where, data, markdown=suffix != ".txt")
        pdf_meta, first_page, n_pages = PaperMeta(), text, None
        kind = "md" if suffix != ".txt" else "txt"
    if not has_real_text(text):
        raise IngestError(where, "no_text", "no extractable text (scanned or image-only?); OCR it first")
    title, authors = _choose_metadata(meta or PaperMeta(), pdf_meta, first_page)
    return Paper(
        paper_id=paper_id_for(source),
        source=source,
        title=title,
        authors=authors,
        kind=kind,
        text=text,
        regions=tuple(regions),
        content_hash=content_hash(data),
        n_pages=n_pages,
    )


def has_real_text(text: str, min_word_chars: int = 20) -> bool:
    """Enough words to be worth indexing. Repeated lines count once: a scan whose only text layer
    is a stamp or label on every page ("Background", "CONFIDENTIAL") has no text to search."""
    seen: set[str] = set()
    found = 0
    for line in text.split("\n"):
        line = line.strip()
        if line not in seen:
            seen.add(line)
            found += len(_WORD_CHAR.findall(line))
            if found >= min_word_chars:
                return True  # a paper's first lines decide; the whole text is not scanned
    return False


_WORD_CHAR = re.compile(r"\w")


# --- cleaning -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffe]")
_HYPHEN_BREAK = re.compile(r"([a-z])-[ \t]*\n[ \t]*([a-z])")
_SPACES = re.compile(r"[ \u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def clean_text(text: str, join_lines: bool) -> str:
    """Fold the extraction noise that hurts matching: ligatures, control characters, words
    hyphenated across lines, runs of spaces. `join_lines` turns layout line breaks (PDF)
    into spaces while keeping blank-line paragraph breaks."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    if join_lines:
        text = re.sub(r"[ \t]*\n[ \t]*(?!\n)", " ", text)
    text = _SPACES.sub(" ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


# --- PDF --------------------------------------------------------------------------------------


def _parse_pdf(where, data: bytes, password: str | None):
    raw = _read_pdf(where, data, password)
    pages = _drop_running_lines([clean_text(p, join_lines=False) for p in raw.pages])
    text, regions = _join_pages([clean_text(p, join_lines=True) for p in pages])
    first_page = next((p for p in pages if p.strip()), "")
    return text, regions, _pdf_meta(raw), first_page, len(raw.pages)


def _read_pdf(where, data: bytes, password: str | None) -> PdfText:
    """PDFium's text, or pypdf's when PDFium cannot open the file or finds no text in it. pypdf
    names what is wrong when neither has text: damage (a fuzzed file PDFium opens as one blank
    page) or a password; a file both open without text is left to the no-text check."""
    pdf.check_header(where, data)
    try:
        first = pdf.pdfium_text(where, data, password)
    except IngestError:
        return pdf.pypdf_text(where, data, password)
    if has_real_text("\n".join(first.pages)):
        return first
    second = pdf.pypdf_text(where, data, password)
    return second if has_real_text("\n".join(second.pages)) else first


def _pdf_meta(raw: PdfText) -> PaperMeta:
    title, author = raw.title.strip(), raw.author.strip()
    # Producers often leave placeholders such as "untitled" or the file name in /Title.
    if len(title) < 6 or re.search(r"untitled|\.(docx?|pdf|tex|dvi)$|^microsoft", title, re.IGNORECASE):
        title = ""
    authors = tuple(a.strip() for a in re.split(r";|,| and ", author) if a.strip()) if author else ()
    return PaperMeta(title=title or None, authors=authors)


def _drop_running_lines(pages: list[str]) -> list[str]:
    """Remove headers and footers: lines repeated, digits aside, at the top or bottom of most pages."""
    if len(pages) < 3:
        return pages

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line.strip().lower())

    def edges(items: list) -> list:
        if len(items) < 3:
            return []  # a page of one or two lines is all body: "Potato 7" alone on a page is its text
        depth = 2 if len(items) >= 6 else 1  # on a short page the second line is already body text
        return items[:depth] + items[-depth:]

    edge_counts: Counter[str] = Counter()
    for page in pages:
        lines = [ln for ln in page.split("\n") if ln.strip()]
        edge_counts.update({key(ln) for ln in edges(lines)})
    running = {k for k, n in edge_counts.items() if n >= max(3, 0.5 * len(pages)) and k not in ("", "#")}
    page_numbers = re.compile(r"^(page )?#( of #)?$")
    out = []
    for page in pages:
        lines = page.split("\n")
        nonblank = [i for i, ln in enumerate(lines) if ln.strip()]
        at_edge = set(edges(nonblank))
        out.append(
            "\n".join(
                ln
                for i, ln in enumerate(lines)
                if not (i in at_edge and (key(ln) in running or page_numbers.match(key(ln))))
            )
        )
    return out


def _join_pages(pages: list[str]) -> tuple[str, list[Region]]:
    parts, regions, pos = [], [], 0
    for number, page in enumerate(pages, start=1):
        if not page:
            continue
        if parts:
            parts.append("\n\n")
            pos += 2
        parts.append(page)
        regions.append(Region(pos, pos + len(page), page=number))
        pos += len(page)
    return "".join(parts), regions


# --- text and Markdown ---------------------------------------------------------------------


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
_NUMBERED_HEADING = re.compile(r"^(\d+(\.\d+)*\.?|[IVX]+\.)\s+[A-Z][^.!?]{2,120}$")


def _parse_text(where, data: bytes, markdown: bool) -> tuple[str, list[Region]]:
    utf16 = _bom_encoding(data) or _utf16_without_bom(data)
    if b"\x00" in data[:4096] and not utf16 and data.count(b"\x00") > len(data) // 10:
        raise IngestError(where, "binary", "binary data, not text (NUL bytes); is it the right file?")
    text = decode_text(where, data)
    if markdown:
        text = _strip_markdown(text)
    text = clean_text(text.replace("\\$", "$"), join_lines=False)
    return _sections(text, markdown)


def _strip_markdown(text: str) -> str:
    text = re.sub(r"<sup>(.*?)</sup>", r"\1", text, flags=re.DOTALL)
    text = re.sub(r"<[^>\n]{1,200}>", "", text)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images: keep alt text, never the URL
    text = re.sub(r"\[([^\]]+)\]\((?:[^)]*)\)", r"\1", text)  # links: keep the words
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text


def _sections(text: str, markdown: bool) -> tuple[str, list[Region]]:
    """Find headings line by line, drop Markdown's `#` marks, and record each section's span."""
    out_lines, regions = [], []
    pos, section, section_start = 0, None, 0
    for line in text.split("\n"):
        heading = None
        md = _MD_HEADING.match(line) if markdown else None
        if md:
            line = heading = md.group(2).strip()
        elif _NUMBERED_HEADING.match(line.strip()) and len(line) < 130:
            heading = line.strip()
        if heading is not None:
            if pos > section_start:
                regions.append(Region(section_start, pos, section=section))
            section, section_start = heading, pos
        out_lines.append(line)
        pos += len(line) + 1
    cleaned = "\n".join(out_lines)
    regions.append(Region(section_start, len(cleaned), section=section))
    return cleaned, [r for r in regions if r.end > r.start]


# --- title and authors -------------------------------------------------------------------------


def _choose_metadata(curated: PaperMeta, pdf: PaperMeta, text: str) -> tuple[str, tuple[str, ...]]:
    """A curated entry (papers.toml) wins, then PDF metadata, then the first page."""
    guess_title, guess_authors = _first_page_guess(text)
    title = curated.title or pdf.title or guess_title
    authors = curated.authors or pdf.authors or guess_authors
    return title, authors


def _first_page_guess(text: str) -> tuple[str, tuple[str, ...]]:
    lines = [ln.strip() for ln in text[:3000].split("\n") if ln.strip()][:8]
    if not lines:
        return "Untitled", ()
    start = next((i for i, ln in enumerate(lines) if 2 <= len(ln.split()) <= 30), 0)
    title, rest = lines[start], lines[start + 1 :]
    # A title broken over two lines: the first ends on a joining word or the second runs on.
    if rest and len(title) + len(rest[0]) < 250 and (
        re.search(r"(\b(for|of|and|in|on|with|the|a|to)|[:,])$", title, re.IGNORECASE) or rest[0][:1].islower()
    ):
        title, rest = f"{title} {rest[0]}", rest[1:]
    return title[:300], _author_names(rest[0]) if rest else ()


def _author_names(line: str) -> tuple[str, ...]:
    if len(line) > 200 or re.search(r"abstract|universit|institut|@|http", line, re.IGNORECASE):
        return ()
    line = re.sub(r"[\d∗*†‡§¶♠♣♥♦]+", " ", line)
    names = [n.strip() for n in re.split(r",|;|\band\b|\s{2,}", line) if n.strip()]
    if names and all(2 <= len(n.split()) <= 4 and n[:1].isupper() for n in names):
        return tuple(names)
    return ()


def locate(regions: tuple[Region, ...], start: int, end: int) -> tuple[int | None, int | None, str | None]:
    """Pages (first, last) and section heading covering text[start:end]."""
    pages = [r.page for r in regions if r.page is not None and r.start < end and r.end > start]
    section = next((r.section for r in reversed(regions) if r.section and r.start <= start), None)
    return (min(pages) if pages else None, max(pages) if pages else None, section)
