"""The source of a citation: its PDF page as an image with the quote highlighted where it stands,
or a text paper's section with the quote's offsets in it.

The index's line anchors (sourcemap.py) turn the quote's offsets into PDFium char indices;
PDFium merges those into line rectangles (FPDFText_CountRects) and renders the page. Any page of
the paper can be shown at any scale (next/previous, zoom); highlights fall on the pages that
hold the quote's characters. The file is read only when its sha256 is the one indexed.
"""

from __future__ import annotations

import base64
import bisect
import ctypes
import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import pdf, sourcemap
from .chunking import Chunk
from .errors import QueryError, SourceFileError
from .index import PaperInfo
from .papers import content_hash, parse_paper

log = logging.getLogger(__name__)

DEFAULT_SCALE = 1.5  # 108 dpi: a letter page is 918 x 1188 pixels
MIN_SCALE, MAX_SCALE = 0.25, 6.0
# A page image is width x height x 4 bytes while rendered: 40M pixels are 160 MB, whatever
# size a hostile page claims to have.
MAX_PIXELS = 40_000_000
_SUBPIXEL = 16  # PDFium maps page points to integer device pixels; a 16x larger device keeps fractions
REBUILD = "run `culture-rag build` to index the papers again"


@dataclass(frozen=True)
class Box:
    """A highlight rectangle (one line's part of the quote): in pixels of the page image, as
    fractions of the page from its top left (to overlay at any zoom), and in PDF points."""

    left: float
    top: float
    right: float
    bottom: float
    rel_left: float
    rel_top: float
    rel_right: float
    rel_bottom: float
    pdf: tuple[float, float, float, float]  # (left, bottom, right, top), PDF user space


@dataclass(frozen=True)
class SourceView:
    """One view of a citation's source. For a PDF, `png` is page `page` at `scale`, `boxes` the
    quote's characters on it; for text and Markdown, `section_text` holds the quote at
    [quote_start, quote_end). `exact` is True when every character of the quote was traced to
    the characters it was indexed from; `note` says why not, or what is missing."""

    paper_id: str
    source: str
    kind: str
    chunk_id: str
    quote: str
    start: int  # the quote's offsets in the paper's text
    end: int
    exact: bool
    note: str = ""
    page: int | None = None  # the page shown, 1-based
    cited_page: int | None = None  # the page the quote starts on
    n_pages: int | None = None
    scale: float | None = None
    png: bytes | None = field(default=None, repr=False)
    width: int = 0
    height: int = 0
    boxes: tuple[Box, ...] = ()
    char_ranges: tuple[tuple[int, int], ...] = ()  # PDFium (first char index, count) highlighted on this page
    section_text: str | None = None
    quote_start: int | None = None  # the quote's offsets inside section_text
    quote_end: int | None = None

    def to_dict(self, with_png: bool = False) -> dict:
        """JSON-ready; the image as base64 only when asked (it is most of the size)."""
        out = asdict(self)
        out["png"] = base64.b64encode(self.png).decode("ascii") if with_png and self.png else None
        return out


def quote_span(chunk: Chunk, start: int | None, end: int | None) -> tuple[int, int]:
    """The quote's offsets: as given, else the chunk's first sentence, else the whole chunk."""
    if start is None and end is None:
        first = chunk.sentences[0] if chunk.sentences else None
        return (first.start, first.end) if first is not None else (chunk.start, chunk.end)
    start = chunk.start if start is None else start
    end = chunk.end if end is None else end
    if not chunk.start <= start < end <= chunk.end:
        raise QueryError(
            f"quote offsets {start}..{end} are not inside chunk {chunk.chunk_id} ({chunk.start}..{chunk.end}); "
            "give --start/--end within the chunk, or neither for its first sentence"
        )
    return start, end


def source_view(
    paper: PaperInfo,
    chunk: Chunk,
    path: Path,
    lines: Callable[[], np.ndarray],
    start: int | None = None,
    end: int | None = None,
    page: int | None = None,
    scale: float = DEFAULT_SCALE,
    password: str | None = None,
    image: bool = True,
) -> SourceView:
    """The view of chunk text [start, end) (see quote_span) of `paper`, whose file is `path`;
    `lines()` reads the paper's line anchors from the index. `image=False` leaves out the PNG
    (boxes and the image's size stay), for a client that has the page at that scale already."""
    start, end = quote_span(chunk, start, end)
    quote = chunk.text[start - chunk.start : end - chunk.start]
    base = SourceView(paper.paper_id, paper.source, paper.kind, chunk.chunk_id, quote, start, end, exact=False)
    data = _checked_bytes(path, paper)
    if paper.kind == "pdf":
        return _pdf_view(base, data, path, chunk, lines, page, scale, password, image)
    return _text_view(base, data, path, chunk)


def _checked_bytes(path: Path, paper: PaperInfo) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceFileError(path, f"the file of paper {paper.paper_id!r} is missing; put it back or {REBUILD}") from None
    except OSError as exc:
        raise SourceFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    if content_hash(data) != paper.content_hash:
        raise SourceFileError(path, f"the file changed since it was indexed (sha256 differs); {REBUILD}")
    return data


# --- PDF --------------------------------------------------------------------------------------


def _pdf_view(base: SourceView, data: bytes, path: Path, chunk: Chunk, lines, page: int | None, scale: float, password, image: bool):
    import pypdfium2 as pdfium

    doc = _open_pdf(data, path, password)
    if doc is None:  # the text came from pypdf: no page to render here
        return _chunk_text_view(base, chunk, "PDFium cannot open this PDF (its text came from pypdf): the passage is shown as text")
    try:
        n_pages = len(doc)
        traces: dict[int, sourcemap.Traced | None] = {}

        def trace(number: int) -> sourcemap.Traced | None:
            if number not in traces:
                traces[number] = _page_trace(doc, number) if 1 <= number <= n_pages else None
            return traces[number]

        anchors = lines()
        found = sourcemap.quote_chars(anchors, base.start, base.end, base.quote, trace)
        cited = min(found.by_page) if found.by_page else sourcemap.anchor_page(anchors, base.start) or _chunk_page(chunk, base.start)
        shown = page if page is not None else (cited or 1)
        if not 1 <= shown <= n_pages:
            raise QueryError(f"page {shown} is not in {path.name}, which has {n_pages} pages")
        note = "" if found.exact else _inexact_note(anchors, found)
        pdf_page = doc[shown - 1]
        try:
            scale = _capped_scale(pdf_page, scale)
            png, width, height = _render(pdf_page, scale) if image else (None, *_image_size(pdf_page, scale))
            chars = found.by_page.get(shown, [])
            ranges = tuple(sourcemap.runs(chars))
            boxes = _boxes(pdf_page, ranges, width, height) if ranges else ()
        except pdfium.PdfiumError as exc:
            raise SourceFileError(path, f"PDFium cannot render page {shown} ({exc})") from None
        finally:
            pdf_page.close()
    finally:
        doc.close()
    return replace(
        base, exact=found.exact, note=note, page=shown, cited_page=cited, n_pages=n_pages, scale=scale,
        png=png, width=width, height=height, boxes=boxes, char_ranges=ranges,
    )


def _open_pdf(data: bytes, path: Path, password: str | None):
    import pypdfium2 as pdfium

    for candidate in ([password] if password is not None else []) + [None]:
        try:
            return pdfium.PdfDocument(data, password=candidate)
        except pdfium.PdfiumError as exc:
            error = exc
    if "password" in str(error).lower():
        raise SourceFileError(path, "encrypted PDF; give its password (`culture-rag show ... --password PASSWORD`)")
    return None


def _page_trace(doc, number: int) -> sourcemap.Traced | None:
    import pypdfium2 as pdfium

    try:
        page = doc[number - 1]
    except pdfium.PdfiumError:
        return None
    try:
        raw = pdf.page_char_trace(page)
    finally:
        page.close()
    return sourcemap.clean_traced(*raw) if raw is not None else None


def _chunk_page(chunk: Chunk, pos: int) -> int | None:
    pages = [s.page for s in chunk.sentences if s.start <= pos and s.page is not None]
    return pages[-1] if pages else chunk.page_start


def _inexact_note(anchors: np.ndarray, found: sourcemap.QuoteChars) -> str:
    if not len(anchors):
        return "no character positions were recorded for this paper (its text came from pypdf or OCR): the page is shown without highlight"
    if not found.by_page:
        return "the quote's characters could not be found on the page (the file reads differently now?): the page is shown without highlight"
    return "part of the quote could not be traced to the page's characters: only the traced part is highlighted"


def _capped_scale(page, scale: float) -> float:
    width, height = page.get_size()
    scale = min(max(float(scale), MIN_SCALE), MAX_SCALE)
    if width * height * scale * scale > MAX_PIXELS:
        scale = (MAX_PIXELS / max(width * height, 1.0)) ** 0.5
    return scale


def _render(page, scale: float) -> tuple[bytes, int, int]:
    image = page.render(scale=scale).to_pil()
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # level 6 takes 3x as long for 10% less
    return out.getvalue(), image.width, image.height


def _image_size(page, scale: float) -> tuple[int, int]:
    """The size `page.render(scale=scale)` gives its bitmap."""
    width, height = page.get_size()
    if page.get_rotation() % 180:
        width, height = height, width
    return round(width * scale), round(height * scale)


def _boxes(page, ranges: tuple[tuple[int, int], ...], width: int, height: int) -> tuple[Box, ...]:
    """PDFium's line rectangles of each run of quoted characters, placed on the image."""
    textpage = page.get_textpage()
    try:
        rects = [textpage.get_rect(i) for first, count in ranges for i in range(textpage.count_rects(first, count))]
    finally:
        textpage.close()
    return tuple(_box(page, rect, width, height) for rect in rects)


def _box(page, rect: tuple[float, float, float, float], width: int, height: int) -> Box:
    import pypdfium2.raw as raw

    left, bottom, right, top = rect
    xs, ys = [], []
    for x, y in ((left, top), (right, bottom)):
        dx, dy = ctypes.c_int(), ctypes.c_int()
        raw.FPDF_PageToDevice(page.raw, 0, 0, width * _SUBPIXEL, height * _SUBPIXEL, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        xs.append(dx.value / _SUBPIXEL)
        ys.append(dy.value / _SUBPIXEL)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return Box(x0, y0, x1, y1, x0 / width, y0 / height, x1 / width, y1 / height, (left, bottom, right, top))


# --- text and Markdown -----------------------------------------------------------------------


def _text_view(base: SourceView, data: bytes, path: Path, chunk: Chunk) -> SourceView:
    """The quote's section of the file's cleaned text (parsed again: text files are cheap)."""
    paper = parse_paper(path.name, data, display_path=path)
    if paper.text[chunk.start : chunk.end] != chunk.text:
        return _chunk_text_view(base, chunk, "the file's text reads differently from its index; the passage is shown as indexed")
    first, last = _section_bounds(paper.regions, base.start, base.end)
    return replace(
        base, exact=True, section_text=paper.text[first:last], quote_start=base.start - first, quote_end=base.end - first
    )


def _section_bounds(regions, start: int, end: int) -> tuple[int, int]:
    """The span of the regions around [start, end) under the same headings (subsections included)."""
    here = max(0, bisect.bisect_right([r.start for r in regions], start) - 1)
    path = regions[here].heading_path if regions else ()
    under = [r.heading_path[: len(path)] == path for r in regions]
    lo = hi = here
    while lo > 0 and under[lo - 1]:
        lo -= 1
    while hi + 1 < len(regions) and (under[hi + 1] or regions[hi + 1].start < end):
        hi += 1
    return (regions[lo].start, max(regions[hi].end, end)) if regions else (0, end)


def _chunk_text_view(base: SourceView, chunk: Chunk, note: str) -> SourceView:
    return replace(
        base, exact=False, note=note, section_text=chunk.text,
        quote_start=base.start - chunk.start, quote_end=base.end - chunk.start,
    )
