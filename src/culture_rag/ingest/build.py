"""From files to index segments: find the papers, decide what changed, parse PDFs in a
contained child process, chunk and embed only what is new."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Self

from culture_rag import worker
from culture_rag.errors import CultureRagError, IngestError
from culture_rag.files import ascii_fold, ascii_slug, file_sha256, unique_name
from culture_rag.ingest.checks import HEADER_BYTES, PDF_SUFFIXES, SUPPORTED_SUFFIXES, check_content_type
from culture_rag.ingest.ocr import OcrOptions
from culture_rag.ingest.papers import read_paper
from culture_rag.ingest.parsed import Paper, paper_from_dict
from culture_rag.types import PaperMeta

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


class FileStatus(StrEnum):
    """What became of a file that is in the index afterwards, or left it; a file that could not
    be read has its IngestError's reason instead (encrypted, corrupt, no_text, ...)."""

    INDEXED = "indexed"
    UNCHANGED = "unchanged"
    REMOVED = "removed"


@dataclass(frozen=True)
class FileOutcome:
    source: str
    status: FileStatus | str  # a FileStatus, or an IngestError reason
    detail: str = ""
    seconds: float = 0.0
    n_chunks: int = 0
    given: str = ""  # for an added file, the path it was given as (source: the name it is kept by)


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
        return tuple(o for o in self.outcomes if o.status not in tuple(FileStatus))

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
            continue  # is_file() is False for FIFOs and devices, which would block or never end
        # Resolve every file, not only symlinks: a symlinked folder on the way (which newer
        # Pythons' rglob may follow) leads outside just as well.
        try:
            inside = path.resolve(strict=True).is_relative_to(root)
        except (OSError, RuntimeError):  # a loop or a link that vanished meanwhile
            inside = False
        if not inside:
            log.warning("ignoring %s: it leads to a file outside the corpus folder", path)
            continue
        found.append(path)
    return found


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(name: str) -> str:
    """A file name safe to store: no folders, ASCII only (so no look-alike Unicode), no reserved
    device names, a short lower-case suffix. A safe name maps to itself."""
    base = re.split(r"[\\/]", name)[-1]
    # Fold look-alikes first, so the suffix is found where the stored name will have it
    # ("a\u2024pdf" becomes "a.pdf" either way) and a safe name maps to itself.
    stem, dot, suffix = ascii_fold(base).rpartition(".")
    if not dot:
        stem, suffix = suffix, ""
    # The suffix decides how the file is read, so it is cleaned on its own: a stem of only
    # non-Latin letters must not swallow it ("论文.pdf" used to become "pdf", an unsupported type).
    suffix = re.sub(r"[^a-z0-9]+", "", suffix.lower())[:10]
    clean = ascii_slug(stem, keep="A-Za-z0-9._-", limit=100, trim=".-_ ", lower=False)
    if not clean:
        # Distinct non-Latin names must stay distinct, so they get a digest rather than one shared name.
        digest = hashlib.sha256(base.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        original_stem = base.rpartition(".")[0] if "." in base else base
        clean = f"paper-{digest}" if re.search(r"[^\s.]", original_stem) else "paper"
    first, rest = (clean.split(".", 1) + [""])[:2]
    # Windows reserves CON, NUL, COM1, ... with any extension: "con.tar.gz" is as bad as "con".
    if first.lower() in _RESERVED:
        clean = f"{first}-file" + (f".{rest}" if rest else "")
    return f"{clean}.{suffix}" if suffix else clean


# --- contained PDF parsing -------------------------------------------------------------------


def _worker(conn, memory_mb: int, parent_pid: int | None = None, ocr: dict | None = None) -> None:  # runs in the child process
    worker.contain(parent_pid)
    with contextlib.suppress(OSError):
        os.setpgrp()  # its own process group, so a stopped parse also stops the tesseract it runs
    ocr_options = OcrOptions(**ocr) if ocr is not None else None
    # Tesseract's OpenMP threads spin on a busy machine: one thread read pages several times
    # faster here than all cores (bench/ocr.py --compare). The tesseract processes inherit it.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    def announce_ocr(n_pages: int) -> None:
        conn.send_bytes(json.dumps({"ocr_pages": n_pages}).encode())
    # imported before "ready" so the parse timeout measures parsing only; pypdf, the second
    # reader, is imported when a file first needs it (74 ms of every start otherwise)
    import pypdfium2  # noqa: F401

    worker.ready(conn, memory_mb)
    for request in worker.requests(conn):
        try:
            meta = PaperMeta.from_dict(request["meta"]) if request.get("meta") else None
            paper = read_paper(Path(request["path"]), request.get("password"), meta, ocr_options, announce_ocr)
            reply = json.dumps({"paper": asdict(paper)}).encode()
        except IngestError as exc:
            reply = json.dumps({"error": [exc.reason, exc.detail]}).encode()
        except MemoryError:
            reply = json.dumps({"error": ["too_large", _too_large(memory_mb)]}).encode()
        except Exception as exc:  # noqa: BLE001  a bug met on odd input: report it for this file, keep serving the batch
            detail = f"the PDF parser failed ({type(exc).__name__}: {str(exc)[:200]}); the file may be damaged"
            reply = json.dumps({"error": ["crashed", detail]}).encode()
        conn.send_bytes(reply)


def _too_large(memory_mb: int) -> str:
    return (
        f"parsing needed more than {memory_mb} MB (parse_memory_mb); the PDF may be a decompression bomb. "
        "If you trust it, raise CULTURE_RAG_PARSE_MEMORY_MB"
    )


class PdfParser:
    """Parses PDFs in one reusable child process with a wall-clock timeout and an address-space
    limit. A hang, crash or memory blow-up costs that file only: the child is replaced and the
    batch goes on. Messages cross the pipe as JSON, never pickled objects.

    OCR (`ocr`) is slow, so a file's time limit grows with its scanned pages: `timeout_s` plus
    `ocr.page_timeout_s` for each page the child announces it will OCR."""

    def __init__(self, timeout_s: float, memory_mb: int, ocr: OcrOptions | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.ocr = ocr
        self._child = worker.Worker("the PDF parser process")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the child now, so that the first file does not wait for it (about 0.6 s)."""
        if not self._child.alive:
            self._start(Path("(parser start-up)"))

    def _start(self, path: Path) -> None:
        ocr = asdict(self.ocr) if self.ocr is not None else None
        self._child.start(_worker, (self.memory_mb, os.getpid(), ocr), lambda detail: IngestError(path, "crashed", detail))

    def close(self) -> None:
        self._child.stop()

    def parse(self, path: Path, password: str | None, meta: PaperMeta | None) -> Paper:
        if not self._child.alive:
            self._start(path)
        request = {"path": str(path), "password": password}
        if meta is not None:
            request["meta"] = meta.to_dict()
        try:
            self._child.send(request)
            reply = self._reply(path)
        except (EOFError, OSError):
            exit_info = self._child.exit_info()
            self.close()
            raise IngestError(
                path, "crashed", f"the PDF parser died ({exit_info}) on this file; it may be corrupt or hostile"
            ) from None
        if "error" in reply:
            reason, detail = reply["error"]
            raise IngestError(path, reason, detail)
        return paper_from_dict(reply["paper"])

    def _reply(self, path: Path) -> dict:
        deadline = time.monotonic() + self.timeout_s
        ocr_pages = 0
        while True:
            message = self._child.receive(deadline - time.monotonic())
            if message is None:
                self.close()
                raise IngestError(path, "timeout", self._timeout_detail(ocr_pages))
            reply = json.loads(message)
            if "ocr_pages" not in reply:
                return reply
            ocr_pages = int(reply["ocr_pages"])
            deadline += ocr_pages * self.ocr.page_timeout_s

    def _timeout_detail(self, ocr_pages: int) -> str:
        if ocr_pages:
            budget = f"{self.timeout_s:g} s (parse_timeout_s) + {ocr_pages} OCR page(s) x {self.ocr.page_timeout_s:g} s (ocr_page_timeout_s)"
            return (
                f"parsing and OCR took longer than {budget} and were stopped. If it is a file you trust, raise "
                "CULTURE_RAG_OCR_PAGE_TIMEOUT_S, or set CULTURE_RAG_OCR=false to skip its scanned pages"
            )
        return (
            f"parsing took longer than {self.timeout_s:g} s (parse_timeout_s) and was stopped; the PDF may be "
            "damaged or hostile. If it is a large file you trust, raise CULTURE_RAG_PARSE_TIMEOUT_S"
        )


def parse_file(parser: PdfParser, path: Path, password: str | None, meta: PaperMeta | None) -> Paper:
    if path.suffix.lower() in PDF_SUFFIXES:
        try:
            with open(path, "rb") as fh:
                data_head = fh.read(HEADER_BYTES)  # the parent never holds a whole, possibly huge, PDF
        except OSError as exc:
            raise IngestError(path, "unreadable", f"cannot read the file: {exc.strerror or exc}") from exc
        check_content_type(path, data_head)
        return parser.parse(path, password, meta)
    return read_paper(path, password, meta)


def stored_path(corpus_dir: Path, source: Path, taken: set[str] | frozenset[str] = frozenset()) -> Path:
    """Where an added file is kept: a safe name in the corpus folder, never overwriting a
    different file of the same name, nor one of `taken` (names already given in this batch:
    "paper.txt" and "ｐａｐｅｒ.txt" fold to the same name)."""
    def clashes(name: str) -> bool:
        target = corpus_dir / name
        return name in taken or target.exists() and file_sha256(target) != file_sha256(source)

    return corpus_dir / unique_name(safe_name(source.name), clashes)
