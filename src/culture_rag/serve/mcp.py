"""The library for other tools: ask, search, papers and source as a Model Context Protocol server
(`culture-rag mcp --index DIR`), so that an assistant such as a desktop chat client can consult
the papers. Standard input and output carry the protocol; with --http, streamable HTTP on
loopback only (it has no logins)."""

from __future__ import annotations

import base64
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from culture_rag.errors import CultureRagError

log = logging.getLogger(__name__)

MAX_K = 20
LOOPBACK = "127.0.0.1"
INSTRUCTIONS = (
    "Answers questions from a local library of research papers. `ask` returns an answer whose every "
    "sentence is checked against an exact quote (citations: paper, page, quote), or says that the "
    "papers do not answer it; quote the citations when you use the answer. `search` returns the best "
    "matching passages; `papers` lists the library (paper_id restricts ask and search to some papers)."
)


@dataclass(frozen=True)
class Citation:
    n: int
    paper_id: str
    title: str
    authors: tuple[str, ...]
    location: str
    page: int | None
    quote: str
    chunk_id: str
    start: int  # the quote's offsets in the paper's text: `source` shows it in its page
    end: int


@dataclass(frozen=True)
class Passage:
    paper_id: str
    title: str
    location: str
    page_start: int | None
    chunk_id: str
    text: str
    score: float


@dataclass(frozen=True)
class AskResult:
    question: str
    answered: bool  # False: the papers do not answer it (say so rather than guess)
    text: str  # markers [n] refer to citations[n - 1]
    citations: tuple[Citation, ...]
    closest: tuple[Passage, ...]  # when declined, the nearest passages
    notice: str
    generation: int | None


@dataclass(frozen=True)
class SearchResult:
    question: str
    passages: tuple[Passage, ...]


@dataclass(frozen=True)
class Paper:
    paper_id: str
    source: str
    title: str
    authors: tuple[str, ...]
    n_pages: int | None
    n_chunks: int
    added_at: str


@dataclass(frozen=True)
class Library:
    papers: tuple[Paper, ...]


@dataclass(frozen=True)
class Highlight:
    """A box of the quote on the page, as fractions of the page's width and height from its top left."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class SourceResult:
    paper_id: str
    source: str
    kind: str  # pdf, txt or md
    quote: str
    exact: bool  # every quoted character was found where it stands on the page
    note: str
    page: int | None
    cited_page: int | None
    n_pages: int | None
    highlights: tuple[Highlight, ...]
    section_text: str | None  # text and Markdown papers: the quote's section
    quote_start: int | None  # the quote's offsets in section_text
    quote_end: int | None
    png_base64: str | None  # the page image, when asked for


def build_server(assistant) -> MCPServer:
    """An MCP server over `assistant`; the model warms up once the session is open."""

    @asynccontextmanager
    async def warm(_server):
        threading.Thread(target=assistant.warm_up, daemon=True, name="warm-up").start()
        yield {}

    server = MCPServer(name="culture-rag", instructions=INSTRUCTIONS, lifespan=warm)

    @server.tool(title="Ask the papers")
    async def ask(question: str, papers: list[str] | None = None, k: int = 5) -> AskResult:
        """Answer a question from the indexed papers with checked citations, or decline when the
        papers do not answer it. `papers`: paper ids (from `papers`) to search in; `k`: passages
        to read (1 to 20)."""
        answer = await _call(assistant.ask, question, k=_k(k), papers=papers or None)
        return AskResult(
            question=answer.question,
            answered=answer.answered,
            text=answer.text,
            citations=tuple(_citation(c) for c in answer.citations),
            closest=() if answer.answered else tuple(_passage(h) for h in answer.passages[:3]),
            notice=answer.notice or "",
            generation=answer.generation,
        )

    @server.tool(title="Search the papers")
    async def search(question: str, papers: list[str] | None = None, k: int = 5) -> SearchResult:
        """The passages that best match a question, best first (no answer is written)."""
        hits = await _call(assistant.search, question, _k(k), papers=papers or None)
        return SearchResult(question=question, passages=tuple(_passage(h) for h in hits))

    @server.tool(title="List the papers")
    async def papers() -> Library:
        """The papers in the library, with the ids that `ask` and `search` take."""
        listing = await _call(assistant.papers)
        return Library(tuple(_paper(p) for p in listing))

    @server.tool(title="Open a citation's source")
    async def source(
        chunk_id: str, start: int | None = None, end: int | None = None, page: int | None = None, image: bool = False
    ) -> SourceResult:
        """Where a citation stands in its paper: the page (PDF) with the quote's highlight boxes, or
        the section (text, Markdown). Give a citation's chunk_id, start and end; `page` shows another
        page; `image` adds the page as a base64 PNG."""
        view = await _call(assistant.source_view, chunk_id, start=start, end=end, page=page, image=image)
        return _source(view)

    return server


def run(assistant, http_port: int | None = None) -> None:
    server = build_server(assistant)
    if http_port is None:
        server.run("stdio")
    else:
        log.warning("culture-rag MCP: streamable HTTP on http://%s:%d/mcp", LOOPBACK, http_port)
        server.run("streamable-http", host=LOOPBACK, port=http_port)


async def _call(fn, *args, **kwargs):
    """The engine blocks (model, index), so it runs in a worker thread; its errors reach the
    client as tool errors with the engine's message."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except CultureRagError as exc:
        raise ToolError(str(exc)) from None


def _k(k: int) -> int:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ToolError(f"k must be a whole number from 1 to {MAX_K}")
    return k


def _citation(c) -> Citation:
    return Citation(
        n=c.n,
        paper_id=c.paper.paper_id,
        title=c.paper.title,
        authors=tuple(c.paper.authors),
        location=c.location,
        page=c.page,
        quote=c.quote,
        chunk_id=c.chunk.chunk_id,
        start=c.start,
        end=c.end,
    )


def _source(view) -> SourceResult:
    return SourceResult(
        paper_id=view.paper_id,
        source=view.source,
        kind=view.kind,
        quote=view.quote,
        exact=view.exact,
        note=view.note,
        page=view.page,
        cited_page=view.cited_page,
        n_pages=view.n_pages,
        highlights=tuple(Highlight(b.rel_left, b.rel_top, b.rel_right, b.rel_bottom) for b in view.boxes),
        section_text=view.section_text,
        quote_start=view.quote_start,
        quote_end=view.quote_end,
        png_base64=base64.b64encode(view.png).decode("ascii") if view.png else None,
    )


def _passage(h) -> Passage:
    return Passage(
        paper_id=h.paper.paper_id,
        title=h.paper.title,
        location=h.chunk.location,
        page_start=h.chunk.page_start,
        chunk_id=h.chunk.chunk_id,
        text=h.chunk.text,
        score=float(h.score),
    )


def _paper(p) -> Paper:
    return Paper(
        paper_id=p.paper_id,
        source=p.source,
        title=p.title,
        authors=tuple(p.authors),
        n_pages=p.n_pages,
        n_chunks=p.n_chunks,
        added_at=p.added_at,
    )
