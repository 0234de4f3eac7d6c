"""The value objects that cross module boundaries: a paper's metadata and record, a chunk and its
sentences, a search hit, a citation, an answer. Frozen dataclasses with no behaviour beyond
formatting, so that a module needing one only for its type imports this and nothing heavier
(the citations check no longer imports the index, the answerer no longer imports retrieval).
Depends on nothing in the package but the role names of regions."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

from culture_rag.ingest import regions as roles

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class PaperMeta:
    title: str | None = None
    authors: tuple[str, ...] = ()
    affiliation: str | None = None
    year: int | None = None
    doi: str | None = None  # bare, lower-case: 10.1234/abc
    arxiv_id: str | None = None  # without version: 1810.04805
    venue: str | None = None
    url: str | None = None

    def over(self, other: PaperMeta) -> PaperMeta:
        """This metadata where it says something, `other` where it does not."""
        return PaperMeta(**{f.name: getattr(self, f.name) or getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict:
        """The fields that are set, JSON-ready."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
        if "authors" in out:
            out["authors"] = list(out["authors"])
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> PaperMeta:
        return cls(**{**raw, "authors": tuple(raw.get("authors", ()))})


@dataclass(frozen=True, slots=True)  # slots: millions are made on an index load; no __dict__ each
class Span:
    start: int
    end: int
    page: int | None = None  # the page a sentence starts on (PDF)
    role: str = roles.BODY  # what the sentence is: one of regions.ROLES, from the line it starts on


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    paper_id: str
    text: str
    start: int  # offsets into the paper's cleaned text
    end: int
    n_tokens: int
    sentences: tuple[Span, ...]  # absolute offsets of the sentences inside the chunk
    page_start: int | None = None
    page_end: int | None = None
    section: str | None = None
    context: str = ""  # section heading (or title) embedded and keyword-indexed with the text
    role: str = roles.BODY  # the role covering most of the chunk's sentences (headings aside)
    heading_path: tuple[str, ...] = ()  # the headings over the chunk, outermost first; [-1] is `section`

    @property
    def embed_text(self) -> str:
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def location(self) -> str:
        if self.page_start is not None:
            if self.page_end and self.page_end != self.page_start:
                return f"pp. {self.page_start}–{self.page_end}"
            return f"p. {self.page_start}"
        return f"§ {self.section}" if self.section else "whole text"

    def sentence_text(self, span: Span) -> str:
        return self.text[span.start - self.start : span.end - self.start]


@dataclass(frozen=True)
class PaperInfo:
    """A paper as the index records it (no text)."""

    paper_id: str
    source: str
    title: str
    authors: tuple[str, ...]
    kind: str
    n_pages: int | None
    n_chunks: int
    content_hash: str
    added_at: str
    segment: str
    affiliation: str | None = None  # curated (papers.toml), else None
    year: int | None = None
    doi: str | None = None
    arxiv_id: str | None = None
    venue: str | None = None
    url: str | None = None
    found: PaperMeta | None = None  # what the file says, when papers.toml overrides some of it
    ocr_pages: tuple[int, ...] = ()  # pages whose text was read by OCR (ocr.py): a citation of them can say so

    @property
    def metadata(self) -> PaperMeta:
        return PaperMeta(
            self.title, self.authors, self.affiliation, self.year, self.doi, self.arxiv_id, self.venue, self.url
        )

    def with_metadata(self, curated: PaperMeta | None) -> PaperInfo:
        """This paper with papers.toml's entry over what its file says: an edit of papers.toml
        changes the record only, and removing a key brings back the file's value."""
        own = self.found or self.metadata
        final = curated.over(own) if curated else own
        return replace(self, **_meta_fields(final), found=own if final != own else None)


def _meta_fields(meta: PaperMeta) -> dict:
    return {f.name: getattr(meta, f.name) for f in fields(PaperMeta)}


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    paper: PaperInfo
    score: float  # fused RRF score
    dense_rank: int | None  # 1-based rank in the dense list, None when absent
    keyword_rank: int | None
    dense_score: float | None = None  # cosine similarity with the question
    sentence_vectors: np.ndarray | None = field(default=None, compare=False, repr=False)  # per chunk sentence


@dataclass(frozen=True)
class Citation:
    n: int
    chunk: Chunk
    paper: PaperInfo
    quote: str  # exact text of the cited sentence(s)
    start: int  # offsets of the quote in the paper's cleaned text
    end: int
    page: int | None = None

    @property
    def location(self) -> str:
        if self.page is not None:
            return f"p. {self.page}"
        return self.chunk.location


@dataclass(frozen=True)
class Timings:
    search_ms: float
    answer_ms: float
    total_ms: float
    translate_ms: float = 0.0  # a question not in English is translated before the search


@dataclass(frozen=True)
class Answer:
    question: str
    text: str  # with [n] markers
    citations: tuple[Citation, ...]
    passages: tuple[Hit, ...]
    answered: bool
    mode: str
    timings: Timings
    removed: tuple[str, ...] = ()  # generated sentences the citation checks removed
    notice: str = ""
    generation: int | None = None  # the index generation that answered, for audits under rebuilds
    searched_as: str = ""  # the question searched, when it was asked in another language or as a follow-up
    language: str = "en"  # the language it was asked in


@dataclass(frozen=True)
class AnswerEvent:
    kind: str  # "token" (a piece of text as it is generated) or "answer" (the final, checked answer)
    text: str = ""
    answer: Answer | None = None
