"""The checks a file passes before it is read, and what they tell the user: a supported type, not
empty, and a content that matches its name (a PDF's %PDF header; no PDF named as text).

The names of the reasons are IngestError.reason values, which the CLI, the app and the build
report show."""

from __future__ import annotations

from pathlib import Path

from culture_rag.errors import IngestError

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES
# Readers accept the header anywhere in the first kilobyte (some files start with junk bytes).
HEADER_BYTES = 1024


def check_content_type(path: Path | str, data: bytes) -> None:
    """Accept by content, not only by name. `data` may be the file's first HEADER_BYTES only."""
    suffix = check_supported(path)
    check_not_empty(path, data)
    if suffix in PDF_SUFFIXES:
        check_pdf_header(path, data)
    else:
        check_not_pdf(path, data)


def check_supported(path: Path | str) -> str:
    """The file's suffix, lower-cased, when it is a type papers can be read from."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(path, "unsupported", f"unsupported file type {suffix!r}; use PDF, TXT or Markdown")
    return suffix


def check_not_empty(where: Path | str, data: bytes) -> None:
    if not data.strip():
        raise IngestError(where, "empty", "the file is empty; check that it was copied or downloaded completely")


def check_pdf_header(where: Path | str, data: bytes) -> None:
    if b"%PDF" not in data[:HEADER_BYTES]:
        kind = "a ZIP archive" if data.startswith(b"PK\x03\x04") else "not a PDF"
        raise IngestError(where, "corrupt", f"{kind} (no %PDF header) although named .pdf; check the file or its name")


def check_not_pdf(where: Path | str, data: bytes) -> None:
    """For a file named as text."""
    if data.startswith(b"%PDF-"):
        raise IngestError(where, "mismatch", "the file is a PDF but is named as text; rename it to .pdf")
