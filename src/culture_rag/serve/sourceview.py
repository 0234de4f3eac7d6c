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
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from culture_rag import worker
from culture_rag.errors import QueryError, SourceFileError
from culture_rag.ingest import pdf, sourcemap
from culture_rag.ingest.papers import content_hash, parse_paper

if TYPE_CHECKING:  # not imported at run time: the renderer's process needs neither FAISS nor scipy
    from culture_rag.types import Chunk, PaperInfo

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
    section: str | None = None  # the heading the quote stands under
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
    renderer: PageRenderer,
    start: int | None = None,
    end: int | None = None,
    page: int | None = None,
    scale: float = DEFAULT_SCALE,
    password: str | None = None,
    image: bool = True,
) -> SourceView:
    """The view of chunk text [start, end) (see quote_span) of `paper`, whose file is `path`;
    `lines()` reads the paper's line anchors from the index; `renderer` runs PDFium. `image=False`
    leaves out the PNG (boxes and the image's size stay), for a client that has the page already."""
    start, end = quote_span(chunk, start, end)
    quote = chunk.text[start - chunk.start : end - chunk.start]
    base = SourceView(
        paper.paper_id, paper.source, paper.kind, chunk.chunk_id, quote, start, end, exact=False, section=chunk.section
    )
    if paper.kind != "pdf":
        return _text_view(base, _checked_bytes(path, paper.paper_id, paper.content_hash), path, chunk)
    anchors = lines()
    offsets = anchors[:, 0]
    first = max(0, int(np.searchsorted(offsets, start, side="right")) - 1)
    request = {
        "path": str(path), "paper_id": paper.paper_id, "content_hash": paper.content_hash, "password": password,
        "anchors": anchors[first : int(np.searchsorted(offsets, end))].tolist(), "any_anchors": bool(len(anchors)),
        "start": start, "end": end, "quote": quote, "page": page, "scale": scale, "image": image,
        "fallback_page": (int(anchors[first, 1]) if len(anchors) else None) or _chunk_page(chunk, start),
    }
    reply, png = renderer.view(request)
    if reply.get("unopened"):
        return _chunk_text_view(base, chunk, "PDFium cannot open this PDF (its text came from pypdf): the passage is shown as text")
    boxes = tuple(Box(*b[:8], tuple(b[8])) for b in reply.pop("boxes"))
    ranges = tuple(tuple(r) for r in reply.pop("char_ranges"))
    return replace(base, **reply, png=png, boxes=boxes, char_ranges=ranges)


def _checked_bytes(path: Path, paper_id: str, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceFileError(path, f"the file of paper {paper_id!r} is missing; put it back or {REBUILD}") from None
    except OSError as exc:
        raise SourceFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    if content_hash(data) != expected:
        raise SourceFileError(path, f"the file changed since it was indexed (sha256 differs); {REBUILD}")
    return data


# --- PDF (in the renderer's process) -----------------------------------------------------------


def view_page(request: dict) -> tuple[dict, bytes | None]:
    """The PDF part of a view: the file checked, the quote's characters traced, the page
    rendered. Runs in PageRenderer's child process; its reply crosses the pipe as JSON."""
    import pypdfium2 as pdfium

    path = Path(request["path"])
    data = _checked_bytes(path, request["paper_id"], request["content_hash"])
    doc = _open_pdf(data, path, request["password"])
    if doc is None:  # the text came from pypdf: no page to render here
        return {"unopened": True}, None
    start, end, page = request["start"], request["end"], request["page"]
    anchors = request["anchors"]
    try:
        n_pages = len(doc)
        traces: dict[int, sourcemap.PageTrace | None] = {}

        def trace(number: int) -> sourcemap.PageTrace | None:
            if number not in traces:
                traces[number] = _page_trace(doc, number) if 1 <= number <= n_pages else None
            return traces[number]

        found = sourcemap.quote_chars(anchors, start, end, request["quote"], trace)
        cited = min(found.by_page) if found.by_page else request["fallback_page"]
        shown = page if page is not None else (cited or 1)
        if not 1 <= shown <= n_pages:
            raise QueryError(f"page {shown} is not in {path.name}, which has {n_pages} pages")
        pdf_page = doc[shown - 1]
        try:
            scale = _capped_scale(pdf_page, request["scale"])
            png, width, height = _render(pdf_page, scale) if request["image"] else (None, *_image_size(pdf_page, scale))
            ranges = sourcemap.runs(found.by_page.get(shown, []))
            boxes = _boxes(pdf_page, ranges, width, height) if ranges else ()
        except pdfium.PdfiumError as exc:
            raise SourceFileError(path, f"PDFium cannot render page {shown} ({exc})") from None
        finally:
            pdf_page.close()
    finally:
        doc.close()
    reply = {
        "exact": found.exact, "note": "" if found.exact else _inexact_note(request["any_anchors"], found),
        "page": shown, "cited_page": cited, "n_pages": n_pages, "scale": scale, "width": width, "height": height,
        "boxes": [[*astuple(b)[:8], list(b.pdf)] for b in boxes], "char_ranges": [list(r) for r in ranges],
    }
    return reply, png


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


def _page_trace(doc, number: int) -> sourcemap.PageTrace | None:
    import pypdfium2 as pdfium

    try:
        page = doc[number - 1]
    except pdfium.PdfiumError:
        return None
    try:
        raw = pdf.page_char_trace(page)
    finally:
        page.close()
    if raw is None:
        return None
    text, chars = raw
    return sourcemap.clean_traced(text, range(len(text))), chars


def _chunk_page(chunk: Chunk, pos: int) -> int | None:
    pages = [s.page for s in chunk.sentences if s.start <= pos and s.page is not None]
    return pages[-1] if pages else chunk.page_start


def _inexact_note(any_anchors: bool, found: sourcemap.QuoteChars) -> str:
    if not any_anchors:
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
    image.save(out, format="PNG", compress_level=1)  # faster than the default 6 and no larger on papers (bench/README)
    return out.getvalue(), image.width, image.height


def _image_size(page, scale: float) -> tuple[int, int]:
    """The size `page.render(scale=scale)` gives its bitmap (the page's size includes its /Rotate)."""
    width, height = page.get_size()
    return math.ceil(width * scale), math.ceil(height * scale)


def _boxes(page, ranges: list[tuple[int, int]], width: int, height: int) -> tuple[Box, ...]:
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
    paper = parse_paper(path.name, data, display_path=path)  # text, not PDF: no PDFium, no child process
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


# --- the renderer's process ------------------------------------------------------------------


def _render_worker(conn, memory_mb: int, parent_pid: int | None) -> None:  # runs in the child process
    worker.contain(parent_pid)
    import pypdfium2  # noqa: F401  imported before "ready": the timeout measures the view only

    worker.ready(conn, memory_mb)
    for request in worker.requests(conn):
        png = None
        try:
            reply, png = view_page(request)
        except SourceFileError as exc:
            reply = {"error": ["source", exc.path, exc.detail]}
        except QueryError as exc:
            reply = {"error": ["query", "", str(exc)]}
        except MemoryError:
            reply = {"error": ["source", request["path"], f"rendering needed more than {memory_mb} MB (parse_memory_mb)"]}
        except Exception as exc:  # noqa: BLE001  a PDFium failure on odd input costs this view only
            reply = {"error": ["source", request["path"], f"the page could not be shown ({type(exc).__name__}: {str(exc)[:200]})"]}
        conn.send_bytes(json.dumps({**reply, "png": png is not None}).encode())
        if png is not None:
            conn.send_bytes(png)


class PageRenderer:
    """Runs PDFium for source views in one reusable child process, under the parse limits
    (parse_timeout_s, parse_memory_mb). Rendering decodes a page's images and fonts, which text
    extraction at indexing never touched, so a hostile PDF that indexed fine may still hang or
    crash PDFium here: that costs the view, not the app. One view at a time (a lock); the child
    is replaced after a failure. JSON and raw PNG bytes cross the pipe, never pickles."""

    def __init__(self, timeout_s: float, memory_mb: int) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._child = worker.Worker("the page renderer")
        self._lock = threading.Lock()

    def view(self, request: dict) -> tuple[dict, bytes | None]:
        path = request["path"]
        with self._lock:
            if not self._child.alive:
                self._child.start(_render_worker, (self.memory_mb, os.getpid()), lambda detail: SourceFileError(path, detail))
            try:
                self._child.send(request)
                reply = json.loads(self._receive(path))
                png = self._receive(path) if reply.pop("png") else None
            except (EOFError, OSError):
                self._child.stop()
                raise SourceFileError(path, "PDFium died showing this page; the PDF may be corrupt or hostile") from None
        if "error" in reply:
            kind, where, detail = reply["error"]
            raise QueryError(detail) if kind == "query" else SourceFileError(where, detail)
        return reply, png

    def _receive(self, path: str) -> bytes:
        message = self._child.receive(self.timeout_s)
        if message is None:
            self._child.stop()
            raise SourceFileError(path, f"showing the page took longer than {self.timeout_s:g} s (parse_timeout_s) and was stopped; the PDF may be damaged or hostile")
        return message

    def close(self) -> None:
        with self._lock:
            self._child.stop()
