"""The library for other tools: ask, search and papers as a Model Context Protocol server
(`culture-rag mcp --index DIR`), so that an assistant such as a desktop chat client can consult
the papers. Standard input and output carry the protocol; with --http, streamable HTTP on
loopback only (it has no logins)."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from .errors import CultureRagError

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
