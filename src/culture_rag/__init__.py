"""culture-rag: offline question answering with checked citations over research papers.

The public names are imported on first use: the PDF parser's child process imports only
`culture_rag.ingest.build`, and importing the whole engine (FAISS, numpy, the answerer) with it cost
0.38 s of every parser start, most of the time to index one small paper beside its embedding.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_MODULE_OF = {
    "Assistant": "assistant",
    "Library": "library",
    "Answer": "types",
    "AnswerEvent": "types",
    "Chunk": "types",
    "Citation": "types",
    "Span": "types",
    "Timings": "types",
    "CultureRagError": "errors",
    "EncryptedPdfError": "errors",
    "IndexLoadError": "errors",
    "IndexModelMismatch": "errors",
    "IndexWriteError": "errors",
    "IngestError": "errors",
    "ModelError": "errors",
    "PaperNotFoundError": "errors",
    "QueryError": "errors",
    "SourceFileError": "errors",
    "PaperInfo": "types",
    "select_papers": "index.catalog",
    "ExportedAnswer": "serve.export",
    "answer_markdown": "serve.export",
    "bibtex": "serve.export",
    "cited_papers": "serve.export",
    "conversation_markdown": "serve.export",
    "PaperMeta": "types",
    "BuildReport": "ingest.build",
    "FileOutcome": "ingest.build",
    "FileStatus": "ingest.build",
    "Paper": "ingest.parsed",
    "Hit": "types",
    "Box": "serve.sourceview",
    "SourceView": "serve.sourceview",
    "Settings": "settings",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from culture_rag.assistant import Assistant
    from culture_rag.errors import (
        CultureRagError,
        EncryptedPdfError,
        IndexLoadError,
        IndexModelMismatch,
        IndexWriteError,
        IngestError,
        ModelError,
        PaperNotFoundError,
        QueryError,
        SourceFileError,
    )
    from culture_rag.index.catalog import select_papers
    from culture_rag.ingest.build import BuildReport, FileOutcome, FileStatus
    from culture_rag.ingest.parsed import Paper
    from culture_rag.library import Library
    from culture_rag.serve.export import ExportedAnswer, answer_markdown, bibtex, cited_papers, conversation_markdown
    from culture_rag.serve.sourceview import Box, SourceView
    from culture_rag.settings import Settings
    from culture_rag.types import Answer, AnswerEvent, Chunk, Citation, Hit, PaperInfo, PaperMeta, Span, Timings
