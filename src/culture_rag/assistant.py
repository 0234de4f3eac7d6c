"""The front object. The CLI, the web app and Python users all go through `Assistant`."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .answer import (
    Draft,
    ExtractiveConfig,
    check_generated,
    extractive_answer,
)
from .catalog import select_papers
from .chunking import chunk_paper, sentence_spans_in_embed_text, table_row_text
from .embedding import Embedder, PassageVectors, SentenceTransformerEmbedder
from .errors import (
    CultureRagError,
    IndexLoadError,
    IndexModelMismatch,
    IndexWriteError,
    IngestError,
    PaperNotFoundError,
    QueryError,
)
from .evidence import Pool, gather, structural_pool
from .files import file_sha256 as file_hash
from .generation import EndpointGenerator, Generator, LocalGenerator
from .index import (
    CURRENT,
    MANIFEST_DIGEST,
    Segment,
    Snapshot,
    generations,
    library_versions,
    load_snapshot,
    read_current,
    read_lines,
    segment_id,
    write_generation,
    write_lock,
)
from .ingest import (
    BuildReport,
    FileOutcome,
    PdfParser,
    ProgressFn,
    check_content_type,
    parse_file,
    scan_corpus,
    stored_path,
)
from .ocr import ocr_options
from .papers import Paper, read_metadata_file
from .prompts import build_messages, select_evidence
from .query import QueryPlan, plan_question, question_parts
from .retrieval import RetrievalConfig, retrieve
from .sourceview import DEFAULT_SCALE, PageRenderer, SourceView, source_view
from .translation import LANGUAGE_NAMES, QuestionTranslator, Translation, detect_language
from .settings import Settings
from .types import Answer, AnswerEvent, Chunk, Citation, Hit, PaperInfo, PaperMeta, Timings

log = logging.getLogger(__name__)


class Assistant:
    """Question answering over an index of papers.

    >>> assistant = Assistant.load("index")          # doctest: +SKIP
    >>> assistant.search("export value of Chinese media", k=3)  # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings()
        self.embedder = embedder or SentenceTransformerEmbedder(self.settings)
        self._snapshot: Snapshot | None = None
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._generators: dict[str, Generator] = {}
        self._translator: QuestionTranslator | None = None
        self._parser: PdfParser | None = None  # kept between writes once warm_up(writes=True) started it
        self._renderer: PageRenderer | None = None  # started by the first source view
        self._configure_faiss()

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls, index_dir: str | Path | None = None, settings: Settings | None = None, embedder: Embedder | None = None
    ) -> Assistant:
        """Open an existing index; raises IndexLoadError naming the path when it is missing or damaged."""
        settings = settings or Settings()
        if index_dir is not None:
            settings = settings.model_copy(update={"index_dir": Path(index_dir)})
        assistant = cls(settings, embedder)
        assistant.reload()
        return assistant

    def reload(self) -> None:
        self._snapshot = load_snapshot(self.settings.index_dir, self.embedder.fingerprint, self.embedder.dimension)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def index_dir(self) -> Path:
        return Path(self.settings.index_dir)

    @property
    def corpus_dir(self) -> Path:
        recorded = self._snapshot.manifest.get("corpus_dir") if self._snapshot else None
        return Path(recorded) if recorded else Path(self.settings.corpus_dir)

    def _configure_faiss(self) -> None:
        from .index import set_search_threads

        set_search_threads(self.settings.faiss_threads)  # applied in every thread that searches

    # --- the library -----------------------------------------------------------------------

    def papers(self, author: str | None = None, year: str | int | None = None, title: str | None = None) -> list[PaperInfo]:
        """The indexed papers; with filters, those by `author`, of `year` (2019, "2018-2021") and
        with `title` words (catalog.select_papers). Their ids scope `ask(q, papers=...)`."""
        listing = list(self._snapshot.papers) if self._snapshot else []
        if author is None and year is None and title is None:
            return listing
        return select_papers(listing, author=author, year=year, title=title)

    def build(self, corpus_dir: str | Path | None = None, progress: ProgressFn | None = None) -> BuildReport:
        """Bring the index in line with the corpus folder: embed new or changed papers only,
        drop papers whose files are gone, keep everything else as it is."""
        corpus = Path(corpus_dir) if corpus_dir is not None else Path(self.settings.corpus_dir)
        files = scan_corpus(corpus)
        metadata = read_metadata_file(corpus)
        with write_lock(self.index_dir):
            try:
                self._reload_if_present()
            except IndexModelMismatch as exc:  # another model or backend: nothing can be kept
                log.warning("%s; embedding every paper again", exc)
                self._snapshot = None
            return self._update(corpus, [(f, None) for f in files], metadata, replace_all=True, progress=progress)

    def add(
        self, paths: Iterable[str | Path], password: str | None = None, progress: ProgressFn | None = None
    ) -> BuildReport:
        """Copy papers into the corpus folder under safe names and index them. A file that
        cannot be read is reported and not kept; the index is unchanged for it."""
        corpus = self.corpus_dir
        corpus.mkdir(parents=True, exist_ok=True)
        with write_lock(self.index_dir):
            try:
                self._reload_if_present()
                staged, early = self._stage(corpus, [Path(p) for p in paths])
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
        return replace(report, outcomes=tuple(early) + report.outcomes)

    def _stage(self, corpus: Path, paths: list[Path]) -> tuple[list[Path], list[FileOutcome]]:
        incoming = corpus / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        staged, outcomes = [], []
        taken: set[str] = set()
        for path in paths:
            try:
                if not path.is_file():  # a FIFO or a device would block read_bytes forever
                    raise IngestError(path, "unreadable", "not a regular file; give the path of a PDF, TXT or Markdown file")
                data = path.read_bytes()
                check_content_type(path, data)
            except IngestError as exc:
                outcomes.append(FileOutcome(path.name, exc.reason, exc.detail))
                continue
            except OSError as exc:
                outcomes.append(FileOutcome(path.name, "unreadable", f"cannot read the file: {exc.strerror or exc}"))
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
        return staged, outcomes

    def remove(self, paper_id: str) -> BuildReport:
        """Drop a paper from the index; its file moves to the corpus folder's .trash/."""
        with write_lock(self.index_dir):
            self._reload_if_present()
            info = next((p for p in self.papers() if p.paper_id == paper_id), None)
            if info is None:
                raise PaperNotFoundError(paper_id)
            start = time.perf_counter()
            existing = self._snapshot.segments()
            self._write(self.corpus_dir, [existing[p.paper_id] for p in self.papers() if p.paper_id != paper_id])
            source = self.corpus_dir / info.source
            if source.exists():
                (self.corpus_dir / ".trash").mkdir(exist_ok=True)
                source.replace(self.corpus_dir / ".trash" / info.source)
        return self._report([FileOutcome(info.source, "removed")], 0, time.perf_counter() - start)

    def _reload_if_present(self) -> None:
        """Before a write: load what another process may have written since. The snapshot in
        memory is kept when it is still the live generation (re-verifying a large index costs
        far more than the write itself)."""
        if self._snapshot is not None and self._is_live(self._snapshot):
            return
        # Not read_current(): a damaged CURRENT must reach load_snapshot, which falls back.
        if (self.index_dir / CURRENT).exists() or generations(self.index_dir):
            self.reload()

    def _is_live(self, snapshot: Snapshot) -> bool:
        try:
            live = read_current(self.index_dir) == snapshot.path.name
            on_disk = json.loads((snapshot.path / "manifest.json").read_bytes()) if live else {}
        except (IndexLoadError, OSError, ValueError):
            return False
        return on_disk.get(MANIFEST_DIGEST) is not None and on_disk.get(MANIFEST_DIGEST) == snapshot.manifest.get(MANIFEST_DIGEST)

    def _update(
        self,
        corpus: Path,
        files: list[tuple[Path, str | None]],
        metadata: dict[str, PaperMeta],
        replace_all: bool,
        progress: ProgressFn | None,
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
            if old and old.content_hash == file_hash(path) and old.segment == segment_id(old.content_hash, signature):
                kept[source] = old.with_metadata(metadata.get(source))
                outcomes.append(FileOutcome(source, "unchanged", n_chunks=old.n_chunks))
            else:
                to_parse.append((path, password))
        new_segments, parse_outcomes = self._ingest(to_parse, metadata, signature, progress)
        outcomes += parse_outcomes
        failed_sources = {o.source for o in parse_outcomes if o.status != "indexed"}
        names = {path.name for path, _ in files}
        for source, old in existing.items():
            if source in kept or source in new_segments:
                continue
            if not replace_all or source in failed_sources:
                kept[source] = old  # keep what was indexed; nothing is lost
            elif source not in names:
                outcomes.append(FileOutcome(source, "removed"))
        changed = bool(new_segments) or len(kept) != len(existing) or any(kept[s] != existing[s] for s in kept)
        if changed or self._snapshot is None:
            previous = self._snapshot.segments() if self._snapshot else {}
            # Kept papers first, in the order they have, then the new ones: the indexes in memory
            # then only need the new papers appended (index.write_generation).
            order = [p.source for p in self.papers() if p.source in kept] + sorted(new_segments)
            kept_segments = {s: replace(previous[info.paper_id], paper=info) for s, info in kept.items()}
            segments = {**kept_segments, **new_segments}
            self._write(corpus, [segments[s] for s in order])
        embedded = sum(len(s.chunks) for s in new_segments.values())
        return self._report(outcomes, embedded, time.perf_counter() - start)

    def _ingest(
        self,
        files: list[tuple[Path, str | None]],
        metadata: dict[str, PaperMeta],
        signature: dict,
        progress: ProgressFn | None,
    ) -> tuple[dict[str, Segment], list[FileOutcome]]:
        """Parse, chunk and embed each file. Paper n+1 is parsed (in the parser process) and
        chunked (in a reader thread) while paper n is embedded, so reading mostly hides behind
        the model instead of adding to it. Files are read smallest first: only the first read
        keeps the model waiting, and a large PDF first (with the parser process's start) was
        0.7 s of a 7 s build. Outcomes come back in the order of `files`."""
        segments: dict[str, Segment] = {}
        outcomes: dict[str, FileOutcome] = {}
        kept = contextlib.nullcontext(self._parser) if self._parser else None
        with kept or PdfParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb, ocr_options(self.settings)) as parser:
            reader = ThreadPoolExecutor(1, thread_name_prefix="culture-rag-reader")
            try:
                smallest_first = sorted(files, key=lambda item: _size(item[0]))
                pending = [reader.submit(self._read, parser, path, password, metadata) for path, password in smallest_first]
                tracker = _EmbedProgress(progress)
                for done, future in enumerate(pending, start=1):
                    read = future.result()
                    if progress:
                        progress("reading", done, len(files))
                    outcomes[read.outcome.source] = read.outcome
                    if read.paper is None:
                        continue
                    tracker.expect(len(read.chunks))
                    segment = self._segment(read.paper, read.chunks, self._embed(read.chunks, tracker.step), signature, segments)
                    segments[read.paper.source] = segment
            finally:
                reader.shutdown(wait=True, cancel_futures=True)  # an embedding error stops the reading too
        return segments, [outcomes[path.name] for path, _ in files]

    def _read(self, parser: PdfParser, path: Path, password: str | None, metadata: dict[str, PaperMeta]) -> _Read:
        max_tokens = min(self.settings.chunk_tokens, self.embedder.max_tokens)
        overlap = min(self.settings.chunk_overlap_tokens, max_tokens // 2)
        t0 = time.perf_counter()
        try:
            paper = parse_file(parser, path, password, metadata.get(path.name))
            chunks = chunk_paper(paper, self.embedder, max_tokens, overlap, self.embedder.max_tokens)
        except IngestError as exc:
            log.warning("%s", exc)
            return _Read(None, (), FileOutcome(path.name, exc.reason, exc.detail, time.perf_counter() - t0))
        seconds = time.perf_counter() - t0
        return _Read(paper, tuple(chunks), FileOutcome(paper.source, "indexed", seconds=seconds, n_chunks=len(chunks)))

    def _segment(
        self, paper: Paper, chunks: tuple[Chunk, ...], vectors: PassageVectors, signature: dict, new: dict[str, Segment]
    ) -> Segment:
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
        return Segment(info, chunks, vectors.chunks, vectors.sentences, lines=lines)

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

    def _write(self, corpus: Path, segments: list[Segment]) -> None:
        header = {
            "model": {
                "id": self.embedder.model_id,
                "fingerprint": self.embedder.fingerprint,
                "dimension": self.embedder.dimension,
                "max_tokens": self.embedder.max_tokens,
            },
            "settings": {k: str(v) for k, v in self.settings.index_signature().items()},
            "libraries": library_versions(),
            "corpus_dir": str(corpus.resolve()),
        }
        self._snapshot = write_generation(self.index_dir, segments, header, self.settings.keep_generations, self._snapshot)

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

    # --- asking ----------------------------------------------------------------------------

    def search(self, question: str, k: int | None = None, papers: Iterable[str] | None = None) -> list[Hit]:
        """The k best passages; with `papers` (paper ids), only from those papers. An id not in
        the index raises PaperNotFoundError naming it."""
        snapshot = self._require_snapshot()
        question = self.check_question(question)
        return self._search(snapshot, question, k or self.settings.top_k, papers)

    def _search(
        self, snapshot: Snapshot, question: str, k: int, papers: Iterable[str] | None = None, **flags: bool
    ) -> list[Hit]:
        config = RetrievalConfig(
            k=k,
            candidates=self.settings.candidates,
            rrf_k=self.settings.rrf_k,
            duplicate_cosine=self.settings.duplicate_cosine,
            papers=None if papers is None else frozenset(paper_ids(papers)),
            **flags,
        )
        return retrieve(snapshot, question, self.query_vector(question), config)

    def query_vector(self, text: str) -> np.ndarray:
        with self._cache_lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        vector = self.embedder.embed_query(text)
        with self._cache_lock:
            self._query_cache[text] = vector
            while len(self._query_cache) > 512:
                self._query_cache.popitem(last=False)
        return vector

    def check_question(self, question: str) -> str:
        if not isinstance(question, str):
            raise QueryError("the question must be text")
        cleaned = "".join(ch for ch in question if ch.isprintable() or ch in "\n\t").strip()
        if not cleaned:
            raise QueryError("the question is empty; type a question about the papers")
        if len(cleaned) > self.settings.max_query_chars:
            raise QueryError(
                f"the question has {len(cleaned):,} characters; the limit is {self.settings.max_query_chars:,} "
                "(max_query_chars). Shorten it to the question itself"
            )
        return cleaned

    def source_view(
        self,
        cited: Citation | Hit | Chunk | str,
        start: int | None = None,
        end: int | None = None,
        page: int | None = None,
        scale: float | None = None,
        password: str | None = None,
        image: bool = True,
    ) -> SourceView:
        """The cited page as a PNG with the quote's boxes (PDF), or its section (text, Markdown).
        `cited` is a citation (its quote's offsets and page are the defaults), a hit, a chunk or
        a chunk id; `start`/`end` are offsets in the paper's text inside the chunk (default: the
        chunk's first sentence); `page` shows another page of the paper (highlights stay on the
        quote's own page); `scale` is pixels per PDF point; `image=False` leaves the PNG out.
        The file must be the one indexed (SourceFileError otherwise)."""
        snapshot = self._require_snapshot()
        if isinstance(cited, Citation):
            start = cited.start if start is None and end is None else start
            end = cited.end if end is None else end
        chunk = cited.chunk if isinstance(cited, (Citation, Hit)) else cited
        if isinstance(chunk, str):
            chunk = next((c for c in snapshot.chunks if c.chunk_id == chunk), None)
            if chunk is None:
                raise QueryError(f"no chunk {cited!r} in the index at {self.index_dir}; chunk ids come from `culture-rag search --json`")
        paper = next((p for p in snapshot.papers if p.paper_id == chunk.paper_id), None)
        if paper is None:
            raise PaperNotFoundError(chunk.paper_id)

        def lines() -> np.ndarray:
            return read_lines(self.index_dir, snapshot.manifest, paper)

        with self._cache_lock:
            if self._renderer is None:
                self._renderer = PageRenderer(self.settings.parse_timeout_s, self.settings.parse_memory_mb)
        path = self.corpus_dir / paper.source
        return source_view(paper, chunk, path, lines, self._renderer, start, end, page, scale or DEFAULT_SCALE, password, image)

    def _require_snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise QueryError(f"{self.index_dir}: no index loaded; build one with `culture-rag build`")
        if snapshot.size == 0:
            raise QueryError(f"{self.index_dir}: the index is empty; add papers with `culture-rag add FILE`")
        return snapshot

    def ask(
        self,
        question: str,
        mode: str | None = None,
        k: int | None = None,
        history: Sequence[str] = (),
        papers: Iterable[str] | None = None,
    ) -> Answer:
        """Answer with cited passages, or decline when the papers do not say. With `papers`
        (paper ids), only those papers are searched."""
        final = None
        for event in self.stream(question, mode, k, history, papers):
            final = event.answer or final
        assert final is not None
        return final

    def stream(
        self,
        question: str,
        mode: str | None = None,
        k: int | None = None,
        history: Sequence[str] = (),
        papers: Iterable[str] | None = None,
    ) -> Iterator[AnswerEvent]:
        """Like `ask`, yielding text as it is produced and the checked `Answer` last.
        `history` holds the earlier questions of a conversation, for follow-ups."""
        start = time.perf_counter()
        snapshot = self._require_snapshot()  # one snapshot for the whole answer, even if a rebuild lands
        asked = self.check_question(question)
        translation = self._translate(asked)
        focus = translation.english  # the papers are English: a question in another language is searched in English
        query = retrieval_query(focus, [self.check_question(h) for h in history if h and h.strip()])
        plan = replace(self._plan(snapshot, focus, papers), language=translation.source_language)
        hits = self._search(snapshot, query, k or self.settings.top_k, plan.papers or None)
        pool = structural_pool(snapshot, plan, hits, self.query_vector(query))
        searched = time.perf_counter()
        mode = mode or self.settings.answer_mode
        if mode == "extractive":
            draft = self._extractive(snapshot, plan, query, focus, pool)
            if draft.answered:
                yield AnswerEvent("token", draft.text)
        else:
            pieces = []
            evidence, cited = self._evidence(snapshot, plan, query, focus, pool)
            for piece in self._generator(mode).stream(build_messages(focus, evidence)):
                pieces.append(piece)
                yield AnswerEvent("token", piece)
            idf = snapshot.keyword.idf if snapshot.keyword else (lambda words: dict.fromkeys(words, 1.0))
            draft = check_generated(
                "".join(pieces), cited, self.embedder.embed_texts, self.settings.support_min_score, idf
            )
            if not draft.answered:
                fallback = self._extractive(snapshot, plan, query, focus, pool)
                notice = "No generated sentence passed the citation check; this is the extractive answer instead."
                draft = replace(fallback, removed=draft.removed, notice=notice if fallback.answered else "")
        done = time.perf_counter()
        answer = Answer(
            question=asked,
            text=draft.text,
            citations=draft.citations,
            passages=tuple(hits),
            answered=draft.answered,
            mode=mode,
            timings=Timings(
                search_ms=(searched - start) * 1000 - translation.ms,
                answer_ms=(done - searched) * 1000,
                total_ms=(done - start) * 1000,
                translate_ms=translation.ms,
            ),
            removed=draft.removed,
            notice=" ".join(n for n in (language_notice(translation, draft.answered), draft.notice) if n),
            generation=snapshot.generation,
            searched_as=focus if translation.source_language != "en" else "",
            language=translation.source_language,
        )
        yield AnswerEvent("answer", answer.text, answer)

    def _translate(self, question: str) -> Translation:
        """English questions pass as they are; others are translated by the local model, loaded
        on the first such question."""
        if detect_language(question) == "en":
            return Translation(question, "en", 0.0)
        with self._cache_lock:
            if self._translator is None:
                self._translator = QuestionTranslator.from_settings(self.settings, self._generators.get("local"))
        return self._translator.translate(question)

    def _plan(self, snapshot: Snapshot, question: str, papers: Iterable[str] | None) -> QueryPlan:
        """What the question asks for and of which papers; papers the caller chose win over the
        ones the question names."""
        plan = plan_question(question, snapshot.papers)
        if papers is not None:
            plan = replace(plan, papers=paper_ids(papers))
        return plan

    def _extractive(self, snapshot: Snapshot, plan: QueryPlan, query: str, focus: str, pool: Pool) -> Draft:
        config = ExtractiveConfig(
            self.settings.answer_sentences, self.settings.answer_min_score, min_coverage=self.settings.answer_min_coverage
        )
        parts = question_parts(focus)
        part_vectors = [self.query_vector(p) for p in parts] if len(parts) > 1 else []
        return extractive_answer(plan, query, focus, self.query_vector(query), pool, snapshot.keyword, config, part_vectors)

    def _evidence(self, snapshot: Snapshot, plan: QueryPlan, query: str, focus: str, pool: Pool) -> tuple[list, list[Hit]]:
        """The sentences a generative model sees, numbered, with the passage behind each number:
        the best evidence, where the question points first, as the extractive answer ranks it."""
        weights = ExtractiveConfig(self.settings.answer_sentences, self.settings.answer_min_score).weights
        candidates = gather(
            query, focus, self.query_vector(query), pool.hits, snapshot.keyword, weights, pool.wanted,
            pool.abstract_in_focus, front_lines=plan.intent == "authors",
        )
        return select_evidence(candidates, pool.hits)

    def _generator(self, mode: str) -> Generator:
        with self._cache_lock:
            if mode not in self._generators:
                if mode == "local":
                    self._generators[mode] = LocalGenerator(self.settings)
                elif mode == "endpoint":
                    self._generators[mode] = EndpointGenerator(self.settings)
                else:
                    raise QueryError(f"unknown answer mode {mode!r}; use extractive, local or endpoint")
            return self._generators[mode]

    def similarity(self, texts_a: list[str], texts_b: list[str]) -> np.ndarray:
        """Cosine similarity of paired texts with the index's embedding model."""
        a, b = self.embedder.embed_texts(texts_a), self.embedder.embed_texts(texts_b)
        return np.sum(a * b, axis=1)

    def warm_up(self, writes: bool = False) -> None:
        """Load the model and touch every structure, so the first real question is fast. With
        `writes`, also load the passage model and start a PDF parser that stays up between
        writes, so that adding a paper costs about its own parsing and embedding (an app)."""
        if self._snapshot is not None and self._snapshot.size:
            self.search("warm up")
        if writes:
            self.embedder.embed_texts(["warm up"])
            parser = PdfParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb, ocr_options(self.settings))
            parser.start()
            self._parser = parser

    def close(self) -> None:
        """Stop the PDF parser kept by warm_up(writes=True) and the source view's renderer."""
        parser, self._parser = self._parser, None
        if parser is not None:
            parser.close()
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()


def paper_ids(papers: Iterable[str]) -> tuple[str, ...]:
    """A scope as paper ids: one id given as a string is that paper, not its letters."""
    return (papers,) if isinstance(papers, str) else tuple(papers)


def language_notice(translation: Translation, answered: bool) -> str:
    """Says that a question was translated, into what, and in which language the quotes are."""
    if translation.source_language == "en":
        return ""
    name = LANGUAGE_NAMES.get(translation.source_language, "another language")
    quotes = " The quotes are in English, the papers' language." if answered else ""
    return f"Asked in {name}; searched in English as “{translation.english}” ({translation.ms / 1000:.1f} s).{quotes}"


_CONNECTIVE = re.compile(r"^(and|but|also|so|then|what about|how about)\b", re.I)
_BACK_REFERENCE = re.compile(r"\b(it|its|they|their|them|this|that|these|those|there|he|she|his|her)\b", re.I)


def retrieval_query(question: str, history: Sequence[str]) -> str:
    """A follow-up ("and what about Belarus?", "why is that?") is searched together with the
    question before it. A self-contained question is searched alone, short or not."""
    follows = _CONNECTIVE.search(question) or (len(question.split()) <= 5 and _BACK_REFERENCE.search(question))
    if history and follows:
        return f"{history[-1]} {question}"
    return question


@dataclass(frozen=True)
class _Read:
    """One file after the reader thread: its paper and chunks, or why it failed (paper None)."""

    paper: Paper | None
    chunks: tuple[Chunk, ...]
    outcome: FileOutcome


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
    candidate, n = wanted, 2
    while candidate in taken:
        candidate, n = f"{wanted}-{n}", n + 1
    return candidate


__all__ = ["Assistant", "CultureRagError"]
