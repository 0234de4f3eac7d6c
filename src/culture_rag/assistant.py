"""The front object for questions: search, ask, stream and source views over the live snapshot
of a `Library`, which does all the writing (build, add and remove pass through to it)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from culture_rag.answer.compose import Draft, check_generated
from culture_rag.answer.conversation import follow_up_notice, follow_up_question, language_notice, retrieval_query
from culture_rag.answer.generation import EndpointGenerator, Generator, LocalGenerator
from culture_rag.answer.naming import Reference, library_surnames, resolve_papers, without_names
from culture_rag.answer.prompts import DECLINED, build_messages, select_evidence
from culture_rag.answer.retrieval import RetrievalConfig, retrieve
from culture_rag.answer.translation import QuestionTranslator, Translation, detect_language
from culture_rag.embed.embedder import Embedder
from culture_rag.errors import CultureRagError, PaperNotFoundError, QueryError
from culture_rag.index import Snapshot
from culture_rag.index.dense import set_search_threads
from culture_rag.ingest.build import BuildReport, ProgressFn
from culture_rag.library import Library
from culture_rag.reading.answerer import FittedAnswerer, Reading
from culture_rag.reading.model import load as load_answer_model
from culture_rag.reading.scope import without_titles
from culture_rag.serve.sourceview import DEFAULT_SCALE, PageRenderer, SourceView, source_view
from culture_rag.settings import Settings
from culture_rag.types import Answer, AnswerEvent, Chunk, Citation, Hit, PaperInfo, Timings

log = logging.getLogger(__name__)

ANSWERERS = ("fitted", "baseline")


class Assistant:
    """Question answering over an index of papers.

    >>> assistant = Assistant.load("index")          # doctest: +SKIP
    >>> assistant.search("export value of Chinese media", k=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        library: Library | None = None,
        generators: Mapping[str, Generator] | None = None,
        reader: FittedAnswerer | None = None,
        answerer: str | None = None,
    ) -> None:
        """`library`: the papers to answer from (default: an empty one of settings.index_dir,
        nothing loaded until `reload`). `generators`: answer models by mode ("local",
        "endpoint"), instead of the ones the settings describe, started on first use.
        `reader`: the fitted answerer, instead of the packaged weights and cross-encoder;
        `answerer`: fitted or baseline (the rule-free yardstick), instead of settings.answerer."""
        if library is not None:
            self.settings, self.embedder, self.library = library.settings, library.embedder, library
        else:
            self.library = Library(settings, embedder)
            self.settings, self.embedder = self.library.settings, self.library.embedder
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._generators: dict[str, Generator] = dict(generators or {})
        self._translator: QuestionTranslator | None = None
        self._renderer: PageRenderer | None = None  # started by the first source view
        self._reader = reader  # loaded on the first extractive question (weights, cross-encoder)
        self.answerer = answerer or self.settings.answerer
        if self.answerer not in ANSWERERS:
            raise QueryError(f"unknown answerer {self.answerer!r}; use one of {', '.join(ANSWERERS)}")
        set_search_threads(self.settings.faiss_threads)  # applied in every thread that searches

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls, index_dir: str | Path | None = None, settings: Settings | None = None, embedder: Embedder | None = None
    ) -> Assistant:
        """Open an existing index; raises IndexLoadError naming the path when it is missing or damaged."""
        settings = settings or Settings()
        if index_dir is not None:
            settings = settings.model_copy(update={"index_dir": Path(index_dir)})
        return cls(library=Library.open(settings, embedder))

    def reload(self) -> None:
        self.library.reload()

    @property
    def snapshot(self) -> Snapshot | None:
        return self.library.snapshot

    @property
    def index_dir(self) -> Path:
        return Path(self.settings.index_dir)

    @property
    def corpus_dir(self) -> Path:
        return self.library.corpus_dir

    # --- the library (Library writes; these pass through) ---------------------------------

    def papers(self, author: str | None = None, year: str | int | None = None, title: str | None = None) -> list[PaperInfo]:
        """The indexed papers; with filters, those by `author`, of `year` (2019, "2018-2021") and
        with `title` words (catalog.select_papers). Their ids scope `ask(q, papers=...)`."""
        return self.library.papers(author, year, title)

    def build(
        self, corpus_dir: str | Path | None = None, progress: ProgressFn | None = None, ray: str | None = None
    ) -> BuildReport:
        """Bring the index in line with the corpus folder: embed new or changed papers only,
        drop papers whose files are gone, keep everything else as it is. With `ray`, a Ray
        cluster's address, its workers read and embed the papers (Library.build)."""
        return self.library.build(corpus_dir, progress, ray)

    def add(
        self, paths: Iterable[str | Path], password: str | None = None, progress: ProgressFn | None = None
    ) -> BuildReport:
        """Copy papers into the corpus folder under safe names and index them. A file that
        cannot be read is reported and not kept; the index is unchanged for it."""
        return self.library.add(paths, password, progress)

    def remove(self, paper_id: str) -> BuildReport:
        """Drop a paper from the index; its file moves to the corpus folder's .trash/."""
        return self.library.remove(paper_id)

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
            row = snapshot.chunk_row(chunk)
            chunk = snapshot.chunks[row] if row is not None else None
            if chunk is None:
                raise QueryError(f"no chunk {cited!r} in the index at {self.index_dir}; chunk ids come from `culture-rag search --json`")
        paper = next((p for p in snapshot.papers if p.paper_id == chunk.paper_id), None)
        if paper is None:
            raise PaperNotFoundError(chunk.paper_id)

        def lines() -> np.ndarray:
            return self.library.lines(paper, snapshot)

        with self._cache_lock:
            if self._renderer is None:
                self._renderer = PageRenderer(self.settings.parse_timeout_s, self.settings.parse_memory_mb)
        path = self.corpus_dir / paper.source
        return source_view(paper, chunk, path, lines, self._renderer, start, end, page, scale or DEFAULT_SCALE, password, image)

    def _require_snapshot(self) -> Snapshot:
        snapshot = self.library.snapshot
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
        translation = self._translate(asked, snapshot)
        focus = translation.english  # the papers are English: a question in another language is searched in English
        earlier = [self.check_question(h) for h in history if h and h.strip()]
        rewritten = follow_up_question(focus, earlier, snapshot.papers)  # "What about Belarus?": the one before, of Belarus
        query = rewritten if rewritten != focus else retrieval_query(focus, earlier)
        focus = rewritten
        scope = self._scope(snapshot, focus, papers)
        query = without_names(query, scope.author_names) or query
        k = k or self.settings.top_k
        mode = mode or self.settings.answer_mode
        query, found = self._passages_to_read(snapshot, scope, query, k)
        hits = found[:k]
        searched = time.perf_counter()
        reading = self._read_candidates(snapshot, query, found)  # the cross-encoder: answering, not searching
        if mode == "extractive":
            draft = self._answer(reading, found)
            if draft.answered:
                yield AnswerEvent("token", draft.text)
        elif self.answerer != "baseline" and not self.reader().answers(reading):
            # The same decline as the extractive answer's: a generative model shown sentences
            # that do not answer the question would be asked to invent.
            draft = self._answer(reading, found)
        else:
            pieces = []
            evidence, cited = select_evidence(self._ranked(reading), found)
            for piece in self._generator(mode).stream(build_messages(focus, evidence)):
                pieces.append(piece)
                yield AnswerEvent("token", piece)
            draft = check_generated(
                "".join(pieces), cited, self.embedder.embed_texts, self.settings.support_min_score, _idf_of(snapshot)
            )
            if not draft.answered:
                # The model's decline is not believed over the fitted answerable check: believed,
                # it declined 41% of the answerable researchers' questions of a validation subset
                # (bench/README.md, session 14). The extractive answer stands in for it, as for
                # a reply whose every sentence failed the citation check.
                fallback = self._answer(reading, found)
                notice = ("The model found no answer in the evidence" if draft.text == DECLINED and not draft.removed
                          else "No generated sentence passed the citation check") + "; this is the extractive answer instead."
                draft = replace(fallback, removed=draft.removed, notice=notice if fallback.answered else "")
        done = time.perf_counter()
        answer = Answer(
            question=asked,
            text=draft.text,
            citations=draft.citations,
            passages=shown_passages(hits, found, draft.citations),
            answered=draft.answered,
            mode=mode,
            timings=Timings(
                search_ms=(searched - start) * 1000 - translation.ms,
                answer_ms=(done - searched) * 1000,
                total_ms=(done - start) * 1000,
                translate_ms=translation.ms,
            ),
            removed=draft.removed,
            notice=" ".join(
                n for n in (language_notice(translation, draft.answered), follow_up_notice(asked, focus, translation), draft.notice) if n
            ),
            generation=snapshot.generation,
            searched_as=focus if translation.source_language != "en" or focus != asked else "",
            language=translation.source_language,
        )
        yield AnswerEvent("answer", answer.text, answer)

    def _translate(self, question: str, snapshot: Snapshot) -> Translation:
        """English questions pass as they are; others are translated by the local model, loaded
        on the first such question, told the library's surnames a Chinese question may name."""
        if detect_language(question) == "en":
            return Translation(question, "en", 0.0)
        with self._cache_lock:
            if self._translator is None:
                self._translator = QuestionTranslator.from_settings(self.settings, self._generators.get("local"))
        return self._translator.translate(question, library_surnames(snapshot.papers))

    def _scope(self, snapshot: Snapshot, question: str, papers: Iterable[str] | None) -> Reference:
        """The papers to answer from: the ones the caller chose, else those the question names
        (by file, short name, surname or title), else the whole library (no papers)."""
        if papers is not None:
            return Reference(paper_ids(papers), frozenset(), ())
        return resolve_papers(question, snapshot.papers)

    def reader(self) -> FittedAnswerer:
        """The fitted answerer: its weights (checked by sha256) and the cross-encoder, loaded once."""
        with self._cache_lock:
            if self._reader is None:
                reranker = None
                if self.settings.reranker == "cross-encoder":
                    from culture_rag.answer.rerank import OnnxCrossEncoder  # onnxruntime loads only for the first question

                    reranker = OnnxCrossEncoder(threads=self.settings.reranker_threads)
                self._reader = FittedAnswerer(load_answer_model(self.settings.answerer_weights), reranker)
            return self._reader

    def read(self, question: str, papers: Iterable[str] | None = None) -> tuple[list[Hit], Reading]:
        """The passages the fitted answerer reads for `question` and its scored candidate
        sentences, as `ask` reads them (translated, without a conversation): for fitting."""
        snapshot = self._require_snapshot()
        asked = self._translate(self.check_question(question), snapshot).english
        scope = self._scope(snapshot, asked, papers)
        query = without_names(asked, scope.author_names) or asked
        query, found = self._passages_to_read(snapshot, scope, query, self.settings.top_k)
        return found, self._read_candidates(snapshot, query, found)

    def _passages_to_read(self, snapshot: Snapshot, scope: Reference, query: str, k: int) -> tuple[str, list[Hit]]:
        """The query without the title of a paper it is scoped to, and passages deeper than the
        k shown: most of a chosen paper, or the library's best."""
        query = without_titles(query, [p for p in snapshot.papers if p.paper_id in scope.papers])
        depth = self.settings.reading_depth_scoped if scope.papers else self.settings.reading_depth
        return query, self._search(snapshot, query, max(k, depth), scope.papers or None)

    def _read_candidates(self, snapshot: Snapshot, query: str, found: list[Hit]) -> Reading:
        """The candidate sentences of `found`, scored by the fitted model (the baseline: ranked
        by the first stage alone, with no cross-encoder)."""
        sizes: dict[str, int] = {}
        for hit in found:  # how far into its paper a passage stands, as a share of what was read of it
            sizes[hit.paper.paper_id] = max(sizes.get(hit.paper.paper_id, 0), hit.chunk.end)
        rerank = self.answerer != "baseline"
        return self.reader().read(query, self.query_vector(query), found, _idf_of(snapshot), sizes, rerank=rerank)

    def _ranked(self, reading: Reading) -> list:
        """The candidates best first, as the answerer ranks them (the baseline: the first stage)."""
        if self.answerer == "baseline":
            return [reading.cands[i] for i in reading.first_stage]
        return self.reader().ranked(reading)

    def _answer(self, reading: Reading, found: list[Hit]) -> Draft:
        if self.answerer == "baseline":
            return self.reader().baseline(reading, found)
        return self.reader().answer(reading, found)

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
        snapshot = self.library.snapshot
        if snapshot is not None and snapshot.size:
            self.search("warm up")
        if writes:
            self.library.warm_up()

    def close(self) -> None:
        """Stop the PDF parser kept by warm_up(writes=True) and the source view's renderer."""
        self.library.close()
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()


def paper_ids(papers: Iterable[str]) -> tuple[str, ...]:
    """A scope as paper ids: one id given as a string is that paper, not its letters."""
    return (papers,) if isinstance(papers, str) else tuple(papers)


__all__ = ["Assistant", "CultureRagError"]


def _idf_of(snapshot: Snapshot):
    """The keyword index's idf, or every word alike when the index has none (keyword search off)."""
    return snapshot.keyword.idf if snapshot.keyword else (lambda words: dict.fromkeys(words, 1.0))


def shown_passages(hits: Sequence[Hit], found: Sequence[Hit], citations: Sequence[Citation]) -> tuple[Hit, ...]:
    """The k best passages, then any passage an answer cites from deeper in what was read (the
    fitted reader reads most of a chosen paper): every citation's passage is shown."""
    shown = list(hits)
    ids = {h.chunk.chunk_id for h in shown}
    for c in citations:
        if c.chunk.chunk_id not in ids:
            hit = next((h for h in found if h.chunk.chunk_id == c.chunk.chunk_id), None)
            if hit is not None:
                shown.append(hit)
                ids.add(hit.chunk.chunk_id)
    return tuple(shown)
