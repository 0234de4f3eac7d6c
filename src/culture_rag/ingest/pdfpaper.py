"""Reading a PDF paper: its pages' text (PDFium's, else pypdf's; OCR for pages without a text
layer, ocr.py), cleaned (cleaning.py), running headers and footers dropped, and the pages'
layout lines joined into paragraphs with their regions (regions.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from culture_rag.errors import IngestError
from culture_rag.ingest import pdf, regions as roles
from culture_rag.ingest.checks import check_pdf_header
from culture_rag.ingest.cleaning import clean_text, has_real_text
from culture_rag.ingest.metadata import not_a_title
from culture_rag.ingest.ocr import OcrOptions, OcrPage, read_scanned_pages
from culture_rag.ingest.parsed import Region, merge_spans
from culture_rag.ingest.pdf import PdfText
from culture_rag.types import PaperMeta


@dataclass(frozen=True)
class PdfRead:
    """A PDF read into a paper's text, with what that text was made from (the source view's
    line anchors are found from it: sourcemap.py)."""

    text: str
    regions: list[Region]
    meta: PaperMeta  # what /Title and /Author say, placeholders dropped
    first_page: str  # the first page with text, as cleaned
    n_pages: int
    scanned: tuple[OcrPage, ...]  # the pages read by OCR
    raw: PdfText  # the pages' text as extracted, OCR's included
    cleaned: list[str]  # each page after clean_text
    kept: list[list[int]]  # per page, the indices of its lines that are no running header or footer


def read_pdf(
    where, data: bytes, password: str | None, known: tuple[str, ...] = (), ocr: OcrOptions | None = None, announce_ocr=None
) -> PdfRead:
    """Read and clean a PDF's pages. `known` are the title, authors and affiliations papers.toml
    gives, which mark the title block (regions.classify); with `ocr`, pages without a text
    layer are read by OCR, `announce_ocr(n)` told how many first."""
    raw = _read_pdf(where, data, password)
    raw, scanned = _read_scans(where, data, password, raw, ocr, announce_ocr)
    cleaned = [clean_text(p, join_lines=False) for p in raw.pages]
    kept = _kept_lines(cleaned)
    pages = ["\n".join(lines[i] for i in keep) for lines, keep in zip((p.split("\n") for p in cleaned), kept)]
    text, regions = _join_pages(pages, known, raw.run_in)
    first_page = next((p for p in pages if p.strip()), "")
    return PdfRead(text, regions, _pdf_meta(raw), first_page, len(raw.pages), scanned, raw, cleaned, kept)


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
    """/Title when it is plausible, else the first page's largest-font lines when they are (the
    first page's text guesses after both: metadata.found_metadata)."""
    title = next((t for t in (raw.title.strip(), " ".join(raw.title_lines[:3])) if _plausible_title(t)), "")
    author = raw.author.strip()
    authors = tuple(a.strip() for a in re.split(r";|,| and ", author) if a.strip()) if author else ()
    return PaperMeta(title=title or None, authors=authors)


def _plausible_title(title: str) -> bool:
    """Not a producer's placeholder ("untitled", "Microsoft Word - x.docx", a file name such as
    "report_final_v2" or "scan0001.exe"), not a stamp or running head, a few words long."""
    if len(title) < 6 or len(title) > 300 or not re.search(r"[^\W\d_]{3}", title) or not_a_title(title):
        return False
    if re.search(r"untitled|\.[a-z]{2,4}$|^microsoft", title, re.IGNORECASE) or (" " not in title and "_" in title):
        return False
    return len(title.split()) <= 30


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


def _join_pages(pages: list[str], known: tuple[str, ...] = (), run_in: tuple[tuple[str, ...], ...] = ()) -> tuple[str, list[Region]]:
    """The pages' layout lines joined into paragraphs (a line break only at a blank line), pages
    apart by a blank line. Headings, captions and every change of role get a line of their own,
    so that no sentence runs from a heading into its text. `run_in[p]` are page p's run-in
    headings (fonts.run_in_heads): a line opening with one is cut after it, the space between
    becoming the line break, so the text keeps its length and the source view its anchors."""
    lines: list[roles.Line] = []
    breaks: list[bool] = []  # a blank line before lines[i]
    for number, page in enumerate(pages, start=1):
        page_lines = page.split("\n")
        nonblank = [i for i, ln in enumerate(page_lines) if ln.strip()]
        edge = set(nonblank[: roles.EDGE_DEPTH] + nonblank[-roles.EDGE_DEPTH :])
        heads = {clean_text(h, join_lines=False) for h in run_in[number - 1]} if number <= len(run_in) else set()
        blank = True
        for i, ln in enumerate(page_lines):
            if not ln.strip():
                blank = True
                continue
            text = ln.strip()
            head = next((h for h in heads if text.startswith(h + " ") and not text[len(h) + 1 : len(h) + 2].isspace()), None)
            if head:
                lines.append(roles.Line(head, page=number, page_edge=i in edge, run_in=True))
                breaks.append(blank)
                text, blank = text[len(head) + 1 :], False
            lines.append(roles.Line(text, page=number, page_edge=i in edge))
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
    return "".join(parts), merge_spans(spans, pos, contiguous=False)


def _own_line(label: roles.Label, path: tuple[str, ...], previous: roles.Line) -> bool:
    """Table rows, boilerplate and the title block's lines (title, authors, affiliations) keep
    their layout lines; a title broken after a joining word is one line."""
    if label.role in (roles.TABLE, roles.BOILERPLATE):
        return True
    return label.role == roles.FRONT and not path and not re.search(r"(\b(for|of|and|in|on|with|the|a|to)|[:,])$", previous.text)
