"""culture-rag: offline question answering with checked citations over research papers."""

from .assistant import Assistant
from .chunking import Chunk, Span
from .errors import (
    CultureRagError,
    EncryptedPdfError,
    IndexLoadError,
    IndexModelMismatch,
    IndexWriteError,
    IngestError,
    ModelError,
    PaperNotFoundError,
    QueryError,
)
from .index import PaperInfo
from .ingest import BuildReport, FileOutcome
from .papers import Paper
from .retrieval import Hit
from .settings import Settings

__all__ = [
    "Assistant",
    "BuildReport",
    "Chunk",
    "CultureRagError",
    "EncryptedPdfError",
    "FileOutcome",
    "Hit",
    "IndexLoadError",
    "IndexModelMismatch",
    "IndexWriteError",
    "IngestError",
    "ModelError",
    "Paper",
    "PaperInfo",
    "PaperNotFoundError",
    "QueryError",
    "Settings",
    "Span",
]
