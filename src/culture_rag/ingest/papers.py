"""Reading papers: PDF (with page numbers), plain text and Markdown, all with section headings.

The output is a `Paper` (parsed.py): cleaned text plus the regions that let every character
offset be traced back to its page, its heading chain and its role. Each kind has its reader
(pdfpaper.py, textfile.py); this module checks the file, picks the reader, sets the paper's
metadata (the file's own over papers.toml's, metadata.py) and, for a PDF, the line anchors
the source view needs (sourcemap.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from culture_rag.errors import IngestError
from culture_rag.files import ascii_slug
from culture_rag.ingest import sourcemap
from culture_rag.ingest.checks import PDF_SUFFIXES, SUPPORTED_SUFFIXES, check_not_empty, check_not_pdf, check_supported  # noqa: F401  (SUPPORTED_SUFFIXES: the app's)
from culture_rag.ingest.cleaning import has_real_text
from culture_rag.ingest.metadata import FRONT_CHARS, found_metadata
from culture_rag.ingest.ocr import OcrOptions, OcrPage
from culture_rag.ingest.parsed import Paper
from culture_rag.ingest.pdf import PdfText
from culture_rag.ingest.pdfpaper import read_pdf
from culture_rag.ingest.textfile import parse_text
from culture_rag.types import PaperMeta


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
        read = read_pdf(where, data, password, known, ocr, announce_ocr)
        text, regions, pdf_meta, first_page, n_pages, scanned = (
            read.text, read.regions, read.meta, read.first_page, read.n_pages, read.scanned
        )
        anchors = _line_anchors(read.raw, read.cleaned, read.kept, text, {p.page for p in scanned})
        kind = "pdf"
    else:
        check_not_pdf(where, data)
        text, regions = parse_text(where, data, markdown=suffix != ".txt", known=known)
        pdf_meta, first_page, n_pages, anchors = PaperMeta(), text[:FRONT_CHARS], None, ()
        kind = "md" if suffix != ".txt" else "txt"
    if not has_real_text(text):
        raise IngestError(
            where, "no_text", "no extractable text: fewer than 20 letters or digits (blank pages, a stamp or a label only)"
        )
    found = found_metadata(pdf_meta, first_page)
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


def _line_anchors(
    raw: PdfText, cleaned: list[str], kept: list[list[int]], text: str, ocr_pages: set[int]
) -> tuple[tuple[int, int, int], ...]:
    """What the source view needs to find each line's characters on its page (sourcemap.py):
    only PDFium's text has characters to find again, so OCR'd pages get none."""
    if raw.reader != "pdfium":
        return ()
    return tuple(a for a in sourcemap.line_anchors(raw.pages, cleaned, kept, text) if a[1] not in ocr_pages)
