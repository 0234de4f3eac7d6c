"""From files to index segments: find the papers, decide what changed, parse PDFs in a
contained child process, chunk and embed only what is new."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import resource
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CultureRagError, IngestError
from .papers import (
    PDF_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Paper,
    PaperMeta,
    Region,
    content_hash,
    read_paper,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class FileOutcome:
    source: str
    status: str  # indexed, unchanged, removed, or an IngestError reason (encrypted, corrupt, no_text, ...)
    detail: str = ""
    seconds: float = 0.0
    n_chunks: int = 0


@dataclass(frozen=True)
class BuildReport:
    outcomes: tuple[FileOutcome, ...]
    embedded_chunks: int
    total_chunks: int
    total_papers: int
    generation: int | None
    seconds: float

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status not in ("indexed", "unchanged", "removed"))

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


# --- finding papers ------------------------------------------------------------------------


def scan_corpus(corpus_dir: Path) -> list[Path]:
    """Supported files directly in the corpus folder and below it. Symlinks that lead outside
    the folder are ignored, so a corpus cannot pull in arbitrary files."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CultureRagError(f"{corpus_dir}: no such corpus folder")
    root = corpus_dir.resolve()
    found = []
    for path in sorted(corpus_dir.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(corpus_dir).parts):
            continue
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or not path.is_file():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            log.warning("ignoring %s: symlink to a file outside the corpus folder", path)
            continue
        found.append(path)
    return found


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(name: str) -> str:
    """A file name safe to store: no folders, no look-alike Unicode, no reserved device names."""
    base = re.split(r"[\\/]", name)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-_ ") or "paper"
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[:100].strip(".-_") or "paper"
    if stem.lower() in _RESERVED:
        stem = f"{stem}-file"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def check_content_type(path: Path, data: bytes) -> None:
    """Accept by content, not only by name: a PDF must look like a PDF, text must not be binary."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(path, "unsupported", f"unsupported file type {suffix!r}; use PDF, TXT or Markdown")
    if not data:
        raise IngestError(path, "empty", "the file is empty")
    if suffix in PDF_SUFFIXES:
        if b"%PDF" not in data[:1024]:
            kind = "a ZIP archive" if data.startswith(b"PK\x03\x04") else "not a PDF"
            raise IngestError(path, "corrupt", f"{kind} (no %PDF header) although named .pdf")
    elif data.startswith(b"%PDF-"):
        raise IngestError(path, "mismatch", "the file is a PDF but named as text; rename it to .pdf")


# --- contained PDF parsing -------------------------------------------------------------------


def _worker(conn, memory_mb: int) -> None:  # runs in the child process
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.disable(logging.WARNING)  # pypdf's warnings about odd files are noise here
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        meta = PaperMeta(request["title"], tuple(request["authors"])) if request.get("title") else None
        try:
            paper = read_paper(Path(request["path"]), request.get("password"), meta)
            reply = {"paper": asdict(paper)}
        except IngestError as exc:
            reply = {"error": [exc.reason, exc.detail]}
        except MemoryError:
            reply = {"error": ["too_large", "parsing needed more memory than allowed (parse_memory_mb)"]}
        conn.send_bytes(json.dumps(reply).encode())


class PdfParser:
    """Parses PDFs in one reusable child process with a wall-clock timeout and an address-space
    limit. A hang, crash or memory blow-up costs that file only: the child is replaced and the
    batch goes on. Messages cross the pipe as JSON, never pickled objects."""

    def __init__(self, timeout_s: float, memory_mb: int) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None

    def __enter__(self) -> PdfParser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker, args=(child, self.memory_mb), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def close(self) -> None:
        if self._proc is not None:
            self._conn.close()
            self._proc.kill()
            self._proc.join(5)
            self._proc = self._conn = None

    def parse(self, path: Path, password: str | None, meta: PaperMeta | None) -> Paper:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        request = {"path": str(path), "password": password}
        if meta is not None:
            request.update(title=meta.title, authors=list(meta.authors))
        self._conn.send_bytes(json.dumps(request).encode())
        if not self._conn.poll(self.timeout_s):
            self.close()
            raise IngestError(path, "timeout", f"parsing took longer than {self.timeout_s:.0f} s; the PDF may be hostile")
        try:
            reply = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc else None
            self.close()
            raise IngestError(path, "crashed", f"the PDF parser died (exit code {code}); the file may be corrupt") from None
        if "error" in reply:
            reason, detail = reply["error"]
            raise IngestError(path, reason, detail)
        raw = reply["paper"]
        raw["regions"] = tuple(Region(**r) for r in raw["regions"])
        raw["authors"] = tuple(raw["authors"])
        return Paper(**raw)


def parse_file(parser: PdfParser, path: Path, password: str | None, meta: PaperMeta | None) -> Paper:
    if path.suffix.lower() in PDF_SUFFIXES:
        try:
            data_head = path.read_bytes()[:1024]
        except OSError as exc:
            raise IngestError(path, "unreadable", f"cannot read the file: {exc.strerror or exc}") from exc
        check_content_type(path, data_head or b"")
        return parser.parse(path, password, meta)
    return read_paper(path, password, meta)


def timed(fn, *args) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def file_hash(path: Path) -> str:
    return content_hash(path.read_bytes())


def stored_path(corpus_dir: Path, source: Path) -> Path:
    """Where an added file is kept: a safe name in the corpus folder, never overwriting a
    different file of the same name."""
    name = safe_name(source.name)
    target = corpus_dir / name
    stem, suffix = os.path.splitext(name)
    n = 2
    while target.exists() and file_hash(target) != file_hash(source):
        target = corpus_dir / f"{stem}-{n}{suffix}"
        n += 1
    return target
