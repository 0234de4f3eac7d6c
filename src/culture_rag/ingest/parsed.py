"""A parsed paper: its cleaned text, the regions that trace every character offset to its page,
heading chain and role (front matter, body, caption, table, reference, boilerplate, quoted; see
regions.py), how the readers make those regions from their lines, and finding the regions
under an offset.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from culture_rag.ingest import regions as roles
from culture_rag.ingest.ocr import OcrPage, ocr_page_from_dict
from culture_rag.types import PaperMeta


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


def merge_spans(spans, end: int, contiguous: bool) -> list[Region]:
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
