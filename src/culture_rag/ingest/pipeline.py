"""One paper through a build: parsed, chunked, its keyword terms counted and its chunks and
sentences embedded (PaperReader). The one per-paper path, whether a build reads in this
process (library.Library) or on Ray workers (distributed.py); the driver makes the segments
from the ReadPapers either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from culture_rag.embed.embedder import Embedder, PassageVectors
from culture_rag.errors import IngestError
from culture_rag.index.lexical import TermCounts
from culture_rag.ingest.build import FileOutcome, FileStatus, PdfParser, parse_file
from culture_rag.ingest.chunking import chunk_paper, sentence_spans_in_embed_text, table_row_text
from culture_rag.ingest.parsed import Paper
from culture_rag.settings import Settings
from culture_rag.types import Chunk, PaperMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadPaper:
    """One file after reading: its paper, chunks and term counts and, once embedded, their
    vectors; or why it failed (paper None)."""

    paper: Paper | None
    chunks: tuple[Chunk, ...]
    terms: TermCounts | None
    outcome: FileOutcome
    vectors: PassageVectors | None = None


class PaperReader:
    """Reads one file into what its segment needs: parsed, chunked, term-counted and embedded.
    Library runs it in this process, distributed.py on Ray workers."""

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder

    def read(self, parser: PdfParser, path: Path, password: str | None, meta: PaperMeta | None) -> ReadPaper:
        """Parse and chunk one file, and count its chunks' keyword terms."""
        max_tokens = min(self.settings.chunk_tokens, self.embedder.max_tokens)
        overlap = min(self.settings.chunk_overlap_tokens, max_tokens // 2)
        t0 = time.perf_counter()
        try:
            paper = parse_file(parser, path, password, meta)
            chunks = chunk_paper(paper, self.embedder, max_tokens, overlap, self.embedder.max_tokens)
        except IngestError as exc:
            log.warning("%s", exc)
            return ReadPaper(None, (), None, FileOutcome(path.name, exc.reason, exc.detail, time.perf_counter() - t0))
        terms = TermCounts.of_texts([c.embed_text for c in chunks])
        seconds = time.perf_counter() - t0
        outcome = FileOutcome(paper.source, FileStatus.INDEXED, seconds=seconds, n_chunks=len(chunks))
        return ReadPaper(paper, tuple(chunks), terms, outcome)

    def embed(self, read: ReadPaper, step: Callable[[int], None] | None = None) -> ReadPaper:
        """The read paper with its chunk and sentence vectors (a failed read as it is)."""
        if read.paper is None:
            return read
        return replace(read, vectors=self._embed(read.chunks, step))

    def _embed(self, chunks: tuple[Chunk, ...], step: Callable[[int], None] | None = None) -> PassageVectors:
        texts = [c.embed_text for c in chunks]
        spans = [sentence_spans_in_embed_text(c) for c in chunks]
        vectors = self.embedder.embed_passages(texts, spans, step)
        return self._embed_table_rows(chunks, vectors)

    def _embed_table_rows(self, chunks: tuple[Chunk, ...], vectors: PassageVectors) -> PassageVectors:
        """A table row pooled from its own tokens has no column names and means little; embed
        rows as read with their header instead. Tables are rare, so this costs little."""
        rows, texts = [], []
        position = 0
        for chunk in chunks:
            for i in range(len(chunk.sentences)):
                row = table_row_text(chunk, i)
                if row is not None:
                    rows.append(position)
                    texts.append(f"{chunk.context.splitlines()[0] if chunk.context else ''}: {row}")
                position += 1
        if rows:
            vectors.sentences[rows] = self.embedder.embed_texts(texts)
        return vectors
