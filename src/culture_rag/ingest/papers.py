"""Reading papers: PDF (with page numbers), plain text and Markdown, all with section headings.

The output is a `Paper`: cleaned text plus the regions that let every character offset be
traced back to its page, its heading chain and its role (front matter, body, caption, table,
reference, boilerplate, quoted; see regions.py).
"""

from __future__ import annotations

import bisect
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from culture_rag.ingest import pdf, regions as roles
from culture_rag.ingest.checks import PDF_SUFFIXES, SUPPORTED_SUFFIXES, check_not_empty, check_not_pdf, check_pdf_header, check_supported  # noqa: F401  (SUPPORTED_SUFFIXES: the app's)
from culture_rag.errors import IngestError
from culture_rag.files import ascii_slug
from culture_rag.ingest.metadata import FRONT_CHARS, front_metadata, read_metadata_file  # noqa: F401  (read_metadata_file: re-exported)
from culture_rag.types import PaperMeta
from culture_rag.ingest.ocr import OcrOptions, OcrPage, ocr_page_from_dict, read_scanned_pages
from culture_rag.ingest.pdf import PdfText



@dataclass(frozen=True)
class Region:
    """A span of a paper's cleaned text with one page (PDF), one heading chain and one role."""

    start: int
    end: int
    page: int | None = None
    section: str | None = None  # the innermost heading: heading_path[-1]
    role: str = roles.BODY  # one of regions.ROLES
    heading_path: tuple[str, ...] = ()  # outermost heading first


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
    affiliation: str | None = None  # curated (papers.toml); the front matter holds it too
    year: int | None = None
    doi: str | None = None
    arxiv_id: str | None = None
    venue: str | None = None
    url: str | None = None
    found: PaperMeta = PaperMeta()  # what the file itself says, before papers.toml
    ocr: tuple[OcrPage, ...] = ()  # pages whose text was read by OCR, with Tesseract's lines and word boxes
    # PDF: per line of `text`, (offset, page, offset in PDFium's text of that page); sourcemap.py
    line_anchors: tuple[tuple[int, int, int], ...] = ()

    @property
    def ocr_pages(self) -> tuple[int, ...]:
        return tuple(p.page for p in self.ocr)


def paper_from_dict(raw: dict) -> Paper:
    """A Paper from `dataclasses.asdict(paper)` sent through JSON (the parser process's reply)."""
    regions = tuple(Region(**{**r, "heading_path": tuple(r.get("heading_path", ()))}) for r in raw["regions"])
    found = PaperMeta.from_dict(raw.get("found", {}))
    ocr = tuple(ocr_page_from_dict(p) for p in raw.get("ocr", ()))
    anchors = tuple(tuple(a) for a in raw.get("line_anchors", ()))
    fields = {"regions": regions, "authors": tuple(raw["authors"]), "found": found, "ocr": ocr, "line_anchors": anchors}
    return Paper(**{**raw, **fields})


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paper_id_for(source: str) -> str:
    """A stable, typeable id from the file name: lowercase letters, digits and dashes."""
    slug = ascii_slug(Path(source).stem)
    return slug or "paper-" + hashlib.sha256(source.encode()).hexdigest()[:8]


def read_paper(
    path: Path,
    password: str | None = None,
    meta: PaperMeta | None = None,
    ocr: OcrOptions | None = None,
    announce_ocr: Callable[[int], None] | None = None,
) -> Paper:
    """Read and clean one paper. Raises IngestError (naming the file) when it cannot be read.
    With `ocr`, PDF pages without a text layer are read by OCR (ocr.py); `announce_ocr(n)` is
    told how many before the first."""
    path = Path(path)
    check_supported(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path, "unreadable", f"cannot read the file: {exc.strerror or exc}") from exc
    return parse_paper(path.name, data, password=password, meta=meta, display_path=path, ocr=ocr, announce_ocr=announce_ocr)


def parse_paper(
    source: str,
    data: bytes,
    password: str | None = None,
    meta: PaperMeta | None = None,
    display_path: Path | str | None = None,
    ocr: OcrOptions | None = None,
    announce_ocr: Callable[[int], None] | None = None,
) -> Paper:
    where = display_path or source
    scanned: tuple[OcrPage, ...] = ()
    check_not_empty(where, data)
    suffix = Path(source).suffix.lower()
    meta = meta or PaperMeta()
    known = (meta.title or "", *meta.authors, *(meta.affiliation or "").split(";"))
    if suffix in PDF_SUFFIXES:
        text, regions, pdf_meta, first_page, n_pages, scanned, anchors = _parse_pdf(
            where, data, password, known, ocr, announce_ocr
        )
        kind = "pdf"
    else:
        check_not_pdf(where, data)
        text, regions = _parse_text(where, data, markdown=suffix != ".txt", known=known)
        pdf_meta, first_page, n_pages, anchors = PaperMeta(), text[:FRONT_CHARS], None, ()
        kind = "md" if suffix != ".txt" else "txt"
    if not has_real_text(text):
        raise IngestError(
            where, "no_text", "no extractable text: fewer than 20 letters or digits (blank pages, a stamp or a label only)"
        )
    found = _found_metadata(pdf_meta, first_page)
    final = meta.over(found)
    return Paper(
        paper_id=paper_id_for(source),
        source=source,
        title=final.title or "Untitled",
        authors=final.authors,
        kind=kind,
        text=text,
        regions=tuple(regions),
        content_hash=content_hash(data),
        n_pages=n_pages,
        affiliation=final.affiliation,
        year=final.year,
        doi=final.doi,
        arxiv_id=final.arxiv_id,
        venue=final.venue,
        url=final.url,
        found=found,
        ocr=scanned,
        line_anchors=anchors,
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


def _parse_pdf(where, data: bytes, password: str | None, known: tuple[str, ...] = (), ocr=None, announce_ocr=None):
    raw = _read_pdf(where, data, password)
    raw, scanned = _read_scans(where, data, password, raw, ocr, announce_ocr)
    cleaned = [clean_text(p, join_lines=False) for p in raw.pages]
    kept = _kept_lines(cleaned)
    pages = ["\n".join(lines[i] for i in keep) for lines, keep in zip((p.split("\n") for p in cleaned), kept)]
    text, regions = _join_pages(pages, known)
    first_page = next((p for p in pages if p.strip()), "")
    anchors = _line_anchors(raw, cleaned, kept, text, {p.page for p in scanned})
    return text, regions, _pdf_meta(raw), first_page, len(raw.pages), scanned, anchors


def _line_anchors(
    raw: PdfText, cleaned: list[str], kept: list[list[int]], text: str, ocr_pages: set[int]
) -> tuple[tuple[int, int, int], ...]:
    """What the source view needs to find each line's characters on its page (sourcemap.py):
    only PDFium's text has characters to find again, so OCR'd pages get none."""
    if raw.reader != "pdfium":
        return ()
    from culture_rag.ingest import sourcemap  # it mirrors this module's cleaning, so it imports this module

    return tuple(a for a in sourcemap.line_anchors(raw.pages, cleaned, kept, text) if a[1] not in ocr_pages)


def _read_scans(where, data: bytes, password, raw: PdfText, options: OcrOptions | None, announce):
    if options is None:  # direct reads (tests, fuzzing) leave scans to the no-text check
        return raw, ()
    return read_scanned_pages(where, data, password, raw, options, announce)


def _read_pdf(where, data: bytes, password: str | None) -> PdfText:
    """PDFium's text, or pypdf's when PDFium cannot open the file or finds no text in it. pypdf
    names what is wrong when neither has text: damage (a fuzzed file PDFium opens as one blank
    page) or a password; a file both open without text is left to the no-text check."""
    check_pdf_header(where, data)
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
    return ["\n".join(lines[i] for i in keep) for lines, keep in zip((p.split("\n") for p in pages), _kept_lines(pages))]


def _kept_lines(pages: list[str]) -> list[list[int]]:
    """Per page, the indices of its lines that are not running headers or footers."""
    if len(pages) < 3:
        return [list(range(len(p.split("\n")))) for p in pages]

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
        out.append([i for i, ln in enumerate(lines) if not (i in at_edge and (key(ln) in running or page_numbers.match(key(ln))))])
    return out


def _join_pages(pages: list[str], known: tuple[str, ...] = ()) -> tuple[str, list[Region]]:
    """The pages' layout lines joined into paragraphs (a line break only at a blank line), pages
    apart by a blank line. Headings, captions and every change of role get a line of their own,
    so that no sentence runs from a heading into its text."""
    lines: list[roles.Line] = []
    breaks: list[bool] = []  # a blank line before lines[i]
    for number, page in enumerate(pages, start=1):
        page_lines = page.split("\n")
        nonblank = [i for i, ln in enumerate(page_lines) if ln.strip()]
        edge = set(nonblank[: roles.EDGE_DEPTH] + nonblank[-roles.EDGE_DEPTH :])
        blank = True
        for i, ln in enumerate(page_lines):
            if not ln.strip():
                blank = True
                continue
            lines.append(roles.Line(ln.strip(), page=number, page_edge=i in edge))
            breaks.append(blank)
            blank = False
    labels = roles.classify(lines, known)
    paths = roles.heading_paths(labels)
    parts: list[str] = []
    spans: list[tuple[int, int, int, str, tuple[str, ...]]] = []
    pos = 0
    for i, (line, label) in enumerate(zip(lines, labels)):
        if i:
            prev = labels[i - 1]
            if line.page != lines[i - 1].page:
                sep = "\n\n"
            elif label.role == roles.HEADING and label.heading is None:
                sep = " "  # the second line of a heading
            elif breaks[i] or label.role != prev.role or label.heading or prev.heading or _own_line(label, paths[i], lines[i - 1]):
                sep = "\n"
            else:
                sep = " "
            parts.append(sep)
            pos += len(sep)
        parts.append(line.text)
        spans.append((pos, pos + len(line.text), line.page, label.role, paths[i], label.role == roles.HEADING and label.heading is None))
        pos += len(line.text)
    return "".join(parts), _merge_spans(spans, pos, contiguous=False)


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


def _parse_text(where, data: bytes, markdown: bool, known: tuple[str, ...] = ()) -> tuple[str, list[Region]]:
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
    return cleaned, _merge_spans(spans, len(cleaned), contiguous=True)


def _own_line(label: roles.Label, path: tuple[str, ...], previous: roles.Line) -> bool:
    """Table rows, boilerplate and the title block's lines (title, authors, affiliations) keep
    their layout lines; a title broken after a joining word is one line."""
    if label.role in (roles.TABLE, roles.BOILERPLATE):
        return True
    return label.role == roles.FRONT and not path and not re.search(r"(\b(for|of|and|in|on|with|the|a|to)|[:,])$", previous.text)


def _merge_spans(spans, end: int, contiguous: bool) -> list[Region]:
    """Regions from per-line (start, end, page, role, heading path, continues a heading),
    neighbours that agree merged. Contiguous: each region runs to the next one's start (a text's regions cover it
    whole, as its sections did); else to the end of its page's last line (pages stay apart)."""
    merged: list[list] = []  # [start, stop, page, role, path]
    for i, (start, stop, page, role, path, continuation) in enumerate(spans):
        if contiguous:
            start = 0 if i == 0 else start
            stop = spans[i + 1][0] if i + 1 < len(spans) else end
        last = merged[-1] if merged else None
        if last and last[2] == page and last[3] == role and last[4] is path and (role != roles.HEADING or continuation):
            last[1] = stop
        else:
            merged.append([start, stop, page, role, path])
    regions = [Region(a, b, page, path[-1] if path else None, role, path) for a, b, page, role, path in merged]
    return [r for r in regions if r.end > r.start]


# --- title and authors -------------------------------------------------------------------------


def _found_metadata(pdf: PaperMeta, text: str) -> PaperMeta:
    """What the file says: PDF metadata (title, authors), then the first page (title, authors,
    DOI, arXiv identifier, year). A curated entry (papers.toml) goes over it (PaperMeta.over)."""
    guess_title, guess_authors = _first_page_guess(text)
    return pdf.over(PaperMeta(title=guess_title, authors=guess_authors)).over(front_metadata(text))


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


class Locator:
    """Finds the regions under an offset by bisection: chunking asks once per sentence."""

    def __init__(self, regions: tuple[Region, ...]) -> None:
        self.regions = regions
        self.starts = [r.start for r in regions]
        self.sections: list[str | None] = []
        for r in regions:
            self.sections.append(r.section or (self.sections[-1] if self.sections else None))

    def at(self, pos: int) -> Region | None:
        """The region `pos` falls in, else the last one before it (a gap between pages)."""
        i = bisect.bisect_right(self.starts, pos) - 1
        return self.regions[i] if i >= 0 else None

    def pages(self, start: int, end: int) -> tuple[int | None, int | None]:
        lo = max(0, bisect.bisect_right(self.starts, start) - 1)
        hi = bisect.bisect_left(self.starts, end)
        pages = [r.page for r in self.regions[lo:hi] if r.page is not None and r.start < end and r.end > start]
        return (min(pages), max(pages)) if pages else (None, None)

    def heading_path(self, pos: int) -> tuple[str, ...]:
        region = self.at(pos)
        return region.heading_path if region is not None else ()

    def section(self, pos: int) -> str | None:
        """The nearest heading at or before `pos`."""
        i = bisect.bisect_right(self.starts, pos) - 1
        return self.sections[i] if i >= 0 else None


def locate(regions: tuple[Region, ...], start: int, end: int) -> tuple[int | None, int | None, str | None]:
    """Pages (first, last) and section heading covering text[start:end]."""
    locator = Locator(regions)
    return (*locator.pages(start, end), locator.section(start))
