"""JSON views of the engine's value objects: one shape for the CLI's --json output and the
web app's API."""

from __future__ import annotations


def paper_json(paper) -> dict:
    return {
        "paper_id": paper.paper_id,
        "source": paper.source,
        "title": paper.title,
        "authors": list(paper.authors),
        "affiliation": paper.affiliation,
        **_bibliographic(paper),
        "kind": paper.kind,
        "n_pages": paper.n_pages,
        "n_chunks": paper.n_chunks,
        "added_at": paper.added_at,
        "ocr_pages": list(paper.ocr_pages),
    }


def _bibliographic(paper) -> dict:
    """What a reference list and a BibTeX entry need beyond title and authors (export.py)."""
    return {"year": paper.year, "doi": paper.doi, "arxiv_id": paper.arxiv_id, "venue": paper.venue, "url": paper.url}


def _cited_paper(paper) -> dict:
    """The paper fields a hit and a citation both start with."""
    return {"paper_id": paper.paper_id, "title": paper.title, "authors": list(paper.authors), **_bibliographic(paper)}


def hit_json(hit) -> dict:
    chunk = hit.chunk
    return {
        **_cited_paper(hit.paper),
        "location": chunk.location,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "section": chunk.section,
        "heading_path": list(chunk.heading_path),
        "role": chunk.role,
        "chunk_id": chunk.chunk_id,
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
        "score": hit.score,
        "dense_rank": hit.dense_rank,
        "keyword_rank": hit.keyword_rank,
        "ocr": _read_by_ocr(hit.paper, chunk.page_start, chunk.page_end),
    }


def citation_json(citation) -> dict:
    chunk = citation.chunk
    return {
        "n": citation.n,
        **_cited_paper(citation.paper),
        "location": citation.location,
        "page": citation.page,
        "section": chunk.section,
        "heading_path": list(chunk.heading_path),
        "role": _quote_role(citation),
        "quote": citation.quote,
        "start": citation.start,
        "end": citation.end,
        "chunk_id": chunk.chunk_id,
        "passage": chunk.text,
        "passage_start": chunk.start,
        "ocr": _read_by_ocr(citation.paper, citation.page, citation.page),
    }


def _read_by_ocr(paper, first: int | None, last: int | None) -> bool:
    """The text at these pages was read by OCR, so it may hold misreadings (ocr.py)."""
    return first is not None and any(first <= page <= (last or first) for page in paper.ocr_pages)


def _quote_role(citation) -> str:
    """The role of the sentence the quote starts in, else the passage's."""
    chunk = citation.chunk
    span = next((s for s in chunk.sentences if s.start <= citation.start < s.end), None)
    return span.role if span is not None else chunk.role


def answer_json(answer) -> dict:
    timings = answer.timings
    return {
        "question": answer.question,
        "answered": answer.answered,
        "text": answer.text,
        "mode": answer.mode,
        "notice": answer.notice,
        "removed": list(answer.removed),
        "citations": [citation_json(c) for c in answer.citations],
        "passages": [hit_json(h) for h in answer.passages],
        "timings": {
            "search_ms": timings.search_ms,
            "answer_ms": timings.answer_ms,
            "total_ms": timings.total_ms,
            "translate_ms": timings.translate_ms,
        },
        "generation": answer.generation,
        "language": answer.language,
        "searched_as": answer.searched_as,
    }


def report_json(report) -> dict:
    return {
        "outcomes": [
            {"source": o.source, "status": o.status, "detail": o.detail, "seconds": o.seconds, "n_chunks": o.n_chunks}
            for o in report.outcomes
        ],
        "failed": [o.source for o in report.failed],
        "embedded_chunks": report.embedded_chunks,
        "total_chunks": report.total_chunks,
        "total_papers": report.total_papers,
        "generation": report.generation,
        "seconds": report.seconds,
    }
