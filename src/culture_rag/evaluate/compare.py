"""Scoring a split of the pooled questions (evalsets.py) with several answerers side by side:
the rule-free baseline and the fitted reader, on the same indexes in one run. Each collection
is indexed once into a cache folder and reused while its files, the index settings and the
reading code (ingest/) are unchanged."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from culture_rag import ingest
from culture_rag.assistant import Assistant
from culture_rag.errors import CultureRagError
from culture_rag.evaluate.pool import Collection, PooledQuestion, collections, pool, select
from culture_rag.evaluate.scoring import Outcome, metrics
from culture_rag.library import Library
from culture_rag.settings import INDEX_FIELDS, Settings

ENGINES = ("baseline", "fitted")
FORMS = ("picked", "named")  # a paper chosen in the picker, or named by title in the question


def collection_library(collection: Collection, cache: Path, settings: Settings) -> Library:
    """The collection's index, built on first use into `cache` (its files copied beside it)."""
    digest = hashlib.sha256()
    for f in collection.files:
        digest.update(f"{f.name}\0{f.stat().st_size}\0".encode())
    for name in INDEX_FIELDS:
        digest.update(f"{name}={getattr(settings, name)}\0".encode())
    # The code that reads papers too: an index built by older reading code (titles, chunks) would
    # score the new code on the old one's papers.
    for source in sorted(Path(ingest.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    home = Path(cache) / f"{collection.name}-{digest.hexdigest()[:12]}"
    corpus, index = home / "corpus", home / "index"
    local = settings.model_copy(update={"index_dir": index, "corpus_dir": corpus})
    if not (index / "CURRENT").exists():
        shutil.rmtree(home, ignore_errors=True)
        corpus.mkdir(parents=True)
        for f in collection.files:
            shutil.copyfile(f, corpus / f.name)
        library = Library.open(local, create=True)
        report = library.build(corpus)
        if report.failed:  # a question set scored on an index missing its papers would mislead
            shutil.rmtree(index, ignore_errors=True)
            raise CultureRagError(f"{collection.name}: {report.failed[0].source}: {report.failed[0].status} {report.failed[0].detail}; fix it and run again")
        return library
    return Library.open(local)


@dataclass
class Runner:
    """Assistants of one library, one per answerer, sharing its snapshot and embedder."""

    library: Library
    engines: dict[str, Assistant]

    @classmethod
    def of(cls, library: Library, engines: Iterable[str], reader=None) -> Runner:
        return cls(library, {engine: Assistant(library=library, reader=reader, answerer=engine) for engine in engines})

    def paper_id(self, source: str | None) -> str | None:
        if source is None:
            return None
        snapshot = self.library.snapshot
        return next((p.paper_id for p in snapshot.papers if p.source == source), None) if snapshot else None

    def ask(self, engine: str, pq: PooledQuestion, form: str = "picked") -> Outcome:
        assistant = self.engines[engine]
        question, papers = pq.question.question, None
        if pq.scope is not None:
            if form == "named" and pq.in_context:
                question = pq.in_context
            else:
                papers = [self.paper_id(pq.scope)]
        start = time.perf_counter()
        answer = assistant.ask(question, papers=papers)
        elapsed = (time.perf_counter() - start) * 1000
        return Outcome.of(pq.question, answer, answer.passages, answer.timings.search_ms, elapsed)


def groups_of(pq: PooledQuestion) -> list[str]:
    """The lines a question is reported under: all, its kind of set, its language for XQuAD,
    and unanswerable."""
    kind = {"dev_seed": "dev", "dev_aragog": "dev", "dev_broad": "broad", "own_broad": "broad"}.get(pq.set_name, pq.set_name.split("-")[0])
    if pq.set_name.startswith("crossed-"):
        kind = "crossed"
    out = ["all", kind]
    if pq.collection == "xquad":
        out.append(f"xquad-{pq.language}")
    if not pq.question.answerable:
        out.append("unanswerable")
    return out


def run_splits(
    shared: Path,
    split: dict,
    own: Path | None,
    splits: Sequence[str],
    engines: Sequence[str] = ENGINES,
    forms: Sequence[str] = ("picked",),
    languages: Sequence[str] = ("en",),
    cache: Path | None = None,
    settings: Settings | None = None,
    limit: int = 0,
    dump: Callable[[PooledQuestion, str, str, Outcome], None] | None = None,
) -> dict[str, dict]:
    """Figures keyed "split/group/form/engine": every engine on the same questions and indexes."""
    settings = settings or Settings()
    cache = cache or Path.home() / ".cache" / "culture-rag" / "eval"
    questions = pool(shared, own)
    found = collections(shared)
    runners: dict[str, Runner] = {}
    results = {}
    for split_name in splits:
        chosen = [q for q in select(questions, split, split_name) if q.language in languages]
        chosen = chosen[:limit] if limit else chosen
        by_group: dict[tuple[str, str, str], list[Outcome]] = defaultdict(list)
        for name in sorted({q.collection for q in chosen}):
            if name not in runners:
                runners[name] = Runner.of(collection_library(found[name], cache, settings), engines)
            for pq in (q for q in chosen if q.collection == name):
                for form in forms if pq.scope else ("picked",):
                    for engine in engines:
                        outcome = runners[name].ask(engine, pq, form)
                        for group in groups_of(pq):
                            by_group[(group, form, engine)].append(outcome)
                        if dump is not None:
                            dump(pq, engine, form, outcome)
        for key, outcomes in sorted(by_group.items()):
            results[f"{split_name}/{'/'.join(key)}"] = score(outcomes)
    return results


COLUMNS = ("questions", "evidence_in_quote", "citation_precision", "key_point_coverage", "abstention",
           "false_abstention", "answer_words_p50", "answer_ms_p50")


def table(results: dict[str, dict]) -> str:
    lines = [f"{'split/group/form/engine':40} " + " ".join(f"{c[:10]:>10}" for c in COLUMNS)]
    for key, figures in results.items():
        cells = [f"{figures[c]:10.3f}" if isinstance(figures[c], float) else f"{str(figures[c]):>10}" for c in COLUMNS]
        lines.append(f"{key:40} " + " ".join(cells))
    return "\n".join(lines)


def score(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    keep = ("questions", "evidence_in_quote", "citation_precision", "key_point_coverage", "full_coverage",
            "abstention", "false_abstention", "source_precision", "answer_words_p50", "answer_ms_p50", "answer_ms_p95")
    found = metrics(outcomes)
    return {k: found.get(k) for k in keep}
