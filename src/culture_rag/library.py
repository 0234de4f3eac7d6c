"""The library: the papers of one index and everything that writes it. Finding and staging
files, reading each one (parsed, chunked, term-counted and embedded: pipeline.PaperReader, in
this process or on Ray workers) and handing whole segments to the index's store, which writes
a generation. `Assistant` asks questions of what the library holds."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from culture_rag.embed.embedder import Embedder, SentenceTransformerEmbedder
from culture_rag.errors import IndexModelMismatch, IndexWriteError, IngestError, PaperNotFoundError
from culture_rag.files import file_sha256, unique_name
from culture_rag.index import KeptPaper, ModelInfo, PaperInfo, Segment, Snapshot, Store, open_store, segment_id
from culture_rag.index.catalog import select_papers
from culture_rag.ingest.build import (
    BuildReport,
    FileOutcome,
    FileStatus,
    PdfParser,
    ProgressFn,
    check_content_type,
    scan_corpus,
    stored_path,
)
from culture_rag.ingest.metadata import read_metadata_file
from culture_rag.ingest.ocr import ocr_options
from culture_rag.ingest.pipeline import PaperReader, ReadPaper
from culture_rag.settings import Settings
from culture_rag.types import PaperMeta

log = logging.getLogger(__name__)


class Library:
    """The papers of one index: the live snapshot, and the one writer of new generations.

    >>> library = Library.open(Settings(index_dir="index"), create=True)  # doctest: +SKIP
    >>> library.build("corpus")                                           # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None, store: Store | None = None) -> None:
        self.settings = settings or Settings()
        self.embedder = embedder or SentenceTransformerEmbedder(self.settings)
        self.store: Store = store or open_store(self.settings, self.embedder.fingerprint, self.embedder.dimension)
        self._snapshot: Snapshot | None = None
        self._parser: PdfParser | None = None  # kept between writes once warm_up(writes=True) started it

    @classmethod
    def open(
        cls, settings: Settings | None = None, embedder: Embedder | None = None, create: bool = False
    ) -> Library:
        """The library of settings.index_dir. Without `create`, an index must be there
        (IndexLoadError naming the path otherwise); with it, a missing one is an empty library
        that the first build or add writes."""
        library = cls(settings, embedder)
        if create:
            library.refresh()
        else:
            library.reload()
        return library

    def reload(self) -> None:
        """Load the live generation, verified."""
        self._snapshot = self.store.open()

    def refresh(self) -> None:
        """Load what another process may have written since; the snapshot in memory is kept
        while it is still the live generation."""
        self._snapshot = self.store.snapshot(self._snapshot)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def corpus_dir(self) -> Path:
        recorded = self._snapshot.corpus_dir if self._snapshot else None
        return Path(recorded) if recorded else Path(self.settings.corpus_dir)

    def lines(self, paper: PaperInfo, snapshot: Snapshot | None = None) -> np.ndarray:
        """A paper's line anchors (sourcemap.py), for the source view."""
        return self.store.lines(snapshot or self._snapshot, paper)

    def papers(self, author: str | None = None, year: str | int | None = None, title: str | None = None) -> list[PaperInfo]:
        """The indexed papers; with filters, those by `author`, of `year` (2019, "2018-2021") and
        with `title` words (catalog.select_papers). Their ids scope `ask(q, papers=...)`."""
        listing = list(self._snapshot.papers) if self._snapshot else []
        if author is None and year is None and title is None:
            return listing
        return select_papers(listing, author=author, year=year, title=title)

    def build(
        self, corpus_dir: str | Path | None = None, progress: ProgressFn | None = None, ray: str | None = None
    ) -> BuildReport:
        """Bring the index in line with the corpus folder: embed new or changed papers only,
        drop papers whose files are gone, keep everything else as it is. With `ray` (a Ray
        cluster's address, "127.0.0.1:6379"), the papers are read and embedded on that cluster's
        workers (distributed.py), which must see the corpus folder at the same path."""
        corpus = Path(corpus_dir) if corpus_dir is not None else Path(self.settings.corpus_dir)
        files = scan_corpus(corpus)
        metadata = read_metadata_file(corpus)
        with self.store.lock():
            try:
                self.refresh()
            except IndexModelMismatch as exc:  # another model or backend: nothing can be kept
                log.warning("%s; embedding every paper again", exc)
                self._snapshot = None
            return self._update(corpus, [(f, None) for f in files], metadata, replace_all=True, progress=progress, ray=ray)

    def add(
        self, paths: Iterable[str | Path], password: str | None = None, progress: ProgressFn | None = None
    ) -> BuildReport:
        """Copy papers into the corpus folder under safe names and index them. A file that
        cannot be read is reported and not kept; the index is unchanged for it. Each outcome's
        `given` is the path the file was given as (its `source` is the name it is kept by)."""
        corpus = self.corpus_dir
        corpus.mkdir(parents=True, exist_ok=True)
        with self.store.lock():
            try:
                self.refresh()
                staged, early, given = self._stage(corpus, [Path(p) for p in paths])
                report = self._update(
                    corpus, [(p, password) for p in staged], read_metadata_file(corpus), replace_all=False, progress=progress
                )
                failed = {o.source for o in report.failed}
                for path in staged:
                    final = corpus / path.name  # the staged name was chosen not to clash (stored_path)
                    if path.name in failed or final.exists():
                        path.unlink(missing_ok=True)
                    else:
                        path.replace(final)
            finally:  # a failed write must not leave copies behind in the corpus folder
                shutil.rmtree(corpus / ".incoming", ignore_errors=True)
        named = tuple(replace(o, given=given.get(o.source, o.given)) for o in report.outcomes)
        return replace(report, outcomes=tuple(early) + named)

    def _stage(self, corpus: Path, paths: list[Path]) -> tuple[list[Path], list[FileOutcome], dict[str, str]]:
        """Each file copied into the corpus folder's .incoming/ under the name it will be kept by
        (stored_path: safe, and not clashing): the one place an added file is named."""
        incoming = corpus / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        staged, outcomes, given = [], [], {}
        taken: set[str] = set()
        for path in paths:
            try:
                if not path.is_file():  # a FIFO or a device would block read_bytes forever
                    raise IngestError(path, "unreadable", "not a regular file; give the path of a PDF, TXT or Markdown file")
                data = path.read_bytes()
                check_content_type(path, data)
            except IngestError as exc:
                outcomes.append(FileOutcome(path.name, exc.reason, exc.detail, given=str(path)))
                continue
            except OSError as exc:
                detail = f"cannot read the file: {exc.strerror or exc}"
                outcomes.append(FileOutcome(path.name, "unreadable", detail, given=str(path)))
                continue
            target = incoming / stored_path(corpus, path, taken).name
            taken.add(target.name)
            try:
                target.write_bytes(data)
            except OSError as exc:  # a full disk is not the file's fault, and the next copy would fail too
                raise IndexWriteError(
                    f"{target}: cannot copy {path.name} into the corpus folder ({exc.strerror or exc}); "
                    "free disk space and retry. The index is unchanged"
                ) from exc
            staged.append(target)
            given[target.name] = str(path)
        return staged, outcomes, given

    def remove(self, paper_id: str) -> BuildReport:
        """Drop a paper from the index; its file moves to the corpus folder's .trash/."""
        with self.store.lock():
            self.refresh()
            info = next((p for p in self.papers() if p.paper_id == paper_id), None)
            if info is None:
                raise PaperNotFoundError(paper_id)
            start = time.perf_counter()
            self._snapshot = self.store.remove(paper_id, self._snapshot)
            source = self.corpus_dir / info.source
            if source.exists():
                (self.corpus_dir / ".trash").mkdir(exist_ok=True)
                source.replace(self.corpus_dir / ".trash" / info.source)
        return self._report([FileOutcome(info.source, FileStatus.REMOVED)], 0, time.perf_counter() - start)

    def _update(
        self,
        corpus: Path,
        files: list[tuple[Path, str | None]],
        metadata: dict[str, PaperMeta],
        replace_all: bool,
        progress: ProgressFn | None,
        ray: str | None = None,
    ) -> BuildReport:
        start = time.perf_counter()
        signature = {**self.settings.index_signature(), "model": self.embedder.fingerprint}
        existing = {p.source: p for p in self.papers()}
        outcomes: list[FileOutcome] = []
        kept: dict[str, PaperInfo] = {}
        to_parse: list[tuple[Path, str | None]] = []
        for path, password in files:
            source = path.name
            old = existing.get(source)
            if old and old.content_hash == file_sha256(path) and old.segment == segment_id(old.content_hash, signature):
                kept[source] = old.with_metadata(metadata.get(source))
                outcomes.append(FileOutcome(source, FileStatus.UNCHANGED, n_chunks=old.n_chunks))
            else:
                to_parse.append((path, password))
        new_segments, parse_outcomes = self._ingest(to_parse, metadata, signature, progress, ray)
        outcomes += parse_outcomes
        failed_sources = {o.source for o in parse_outcomes if o.status != FileStatus.INDEXED}
        names = {path.name for path, _ in files}
        for source, old in existing.items():
            if source in kept or source in new_segments:
                continue
            if not replace_all or source in failed_sources:
                kept[source] = old  # keep what was indexed; nothing is lost
            elif source not in names:
                outcomes.append(FileOutcome(source, FileStatus.REMOVED))
        changed = bool(new_segments) or len(kept) != len(existing) or any(kept[s] != existing[s] for s in kept)
        if changed or self._snapshot is None or self._snapshot.outdated:
            # Kept papers first, in the order they have, then the new ones: a stable listing
            # (where each paper's rows lie is the store's business).
            order = [p.source for p in self.papers() if p.source in kept] + sorted(new_segments)
            papers = {**{s: KeptPaper(info) for s, info in kept.items()}, **new_segments}
            self._write(corpus, [papers[s] for s in order])
        embedded = sum(len(s.chunks) for s in new_segments.values())
        return self._report(outcomes, embedded, time.perf_counter() - start)

    def _ingest(
        self,
        files: list[tuple[Path, str | None]],
        metadata: dict[str, PaperMeta],
        signature: dict,
        progress: ProgressFn | None,
        ray: str | None = None,
    ) -> tuple[dict[str, Segment], list[FileOutcome]]:
        """Read and embed each file, in this process or on the Ray cluster at `ray`, and make the
        segments here, in the same order either way (smallest file first), so both give the same
        paper ids. Outcomes come back in the order of `files`."""
        smallest_first = sorted(files, key=lambda item: _size(item[0]))
        if ray is None:
            papers = self._read_here(smallest_first, metadata, progress)
        else:
            from culture_rag.ingest.distributed import read_on_ray

            papers = read_on_ray(ray, self.settings, self.embedder.fingerprint, smallest_first, metadata, progress)
        segments: dict[str, Segment] = {}
        outcomes: dict[str, FileOutcome] = {}
        with contextlib.closing(papers):
            for read in papers:
                outcomes[read.outcome.source] = read.outcome
                if read.paper is not None:
                    segments[read.paper.source] = self._segment(read, signature, segments)
        return segments, [outcomes[path.name] for path, _ in files]

    def _read_here(
        self, files: list[tuple[Path, str | None]], metadata: dict[str, PaperMeta], progress: ProgressFn | None
    ) -> Iterator[ReadPaper]:
        """Each file read and embedded, in order. Paper n+1 is parsed (in the parser process) and
        chunked (in a reader thread) while paper n is embedded, so reading mostly hides behind
        the model instead of adding to it. Files come smallest first: only the first read
        keeps the model waiting, and a large PDF first (with the parser process's start) was
        0.7 s of a 7 s build."""
        reader = PaperReader(self.settings, self.embedder)
        kept = contextlib.nullcontext(self._parser) if self._parser else None
        with kept or PdfParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb, ocr_options(self.settings)) as parser:
            pool = ThreadPoolExecutor(1, thread_name_prefix="culture-rag-reader")
            try:
                pending = [pool.submit(reader.read, parser, path, pw, metadata.get(path.name)) for path, pw in files]
                tracker = _EmbedProgress(progress)
                for done, future in enumerate(pending, start=1):
                    read = future.result()
                    if progress:
                        progress("reading", done, len(files))
                    tracker.expect(len(read.chunks))
                    yield reader.embed(read, tracker.step)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # an embedding error stops the reading too

    def _segment(self, read: ReadPaper, signature: dict, new: dict[str, Segment]) -> Segment:
        """The paper's segment, whole: its record, chunks, vectors, term counts and line anchors."""
        paper, chunks, vectors = read.paper, read.chunks, read.vectors
        info = PaperInfo(
            paper_id=_unique_id(paper.paper_id, paper.source, self.papers(), new),
            source=paper.source,
            title=paper.title,
            authors=paper.authors,
            kind=paper.kind,
            n_pages=paper.n_pages,
            n_chunks=len(chunks),
            content_hash=paper.content_hash,
            added_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            segment=segment_id(paper.content_hash, signature),
            affiliation=paper.affiliation,
            year=paper.year,
            doi=paper.doi,
            arxiv_id=paper.arxiv_id,
            venue=paper.venue,
            url=paper.url,
            ocr_pages=paper.ocr_pages,
        )
        info = replace(info, found=paper.found if info.metadata != paper.found else None)
        chunks = tuple(replace(c, paper_id=info.paper_id) for c in chunks)
        lines = np.asarray(paper.line_anchors, np.int32).reshape(-1, 3)
        return Segment(info, chunks, vectors.chunks, vectors.sentences, read.terms, lines)

    def _write(self, corpus: Path, papers: list[Segment | KeptPaper]) -> None:
        self._snapshot = self.store.write(
            papers,
            model=ModelInfo.of(self.embedder),
            settings={k: str(v) for k, v in self.settings.index_signature().items()},
            corpus_dir=str(corpus.resolve()),
            previous=self._snapshot,
        )

    def _report(self, outcomes: list[FileOutcome], embedded: int, seconds: float) -> BuildReport:
        snap = self._snapshot
        return BuildReport(
            outcomes=tuple(outcomes),
            embedded_chunks=embedded,
            total_chunks=snap.size if snap else 0,
            total_papers=len(snap.papers) if snap else 0,
            generation=snap.generation if snap else None,
            seconds=seconds,
        )

    def warm_up(self) -> None:
        """Load the passage model and start a PDF parser that stays up between writes, so that
        adding a paper costs about its own parsing and embedding (an app)."""
        self.embedder.embed_texts(["warm up"])
        parser = PdfParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb, ocr_options(self.settings))
        parser.start()
        self._parser = parser

    def close(self) -> None:
        """Stop the PDF parser kept by warm_up."""
        parser, self._parser = self._parser, None
        if parser is not None:
            parser.close()


class _EmbedProgress:
    """Embedding progress over the papers taken so far: papers are embedded as they are read,
    so the total grows until the last one."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress, self.done, self.total = progress, 0, 0

    def expect(self, n: int) -> None:
        self.total += n

    def step(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress("embedding", self.done, self.total)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the read reports the error


def _unique_id(wanted: str, source: str, papers: list[PaperInfo], new: dict[str, Segment]) -> str:
    taken = {p.paper_id for p in papers if p.source != source} | {s.paper.paper_id for s in new.values()}
    return unique_name(wanted, taken.__contains__)  # ids are slugs without dots: no suffix to keep
