"""Fit the answerer's weights on the train split and write src/culture_rag/data/answerer.json.

    .venv/bin/python bench/quality/fit.py [--shared ../shared]

Reads only train questions (bench/quality/split.json), each as the engine reads it
(Assistant.read: retrieval, candidate sentences, their features with the cross-encoder). Then
culture_rag.reading.fitting: a candidate is positive when its quote lies inside a gold evidence
string or holds one, or makes a key point; a linear scorer fitted to rank each question's evidence
first among its candidates (fitting.listwise), a logistic regression for P(answerable) per
question (answerable and unanswerable questions), and the selection constants by grid search on
the same readings. The same questions give the same file."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from culture_rag.assistant import Assistant
from culture_rag.evaluate.compare import collection_library
from culture_rag.evaluate.pool import PooledQuestion, collections, pool, read_split, select
from culture_rag.reading.answerer import FittedAnswerer
from culture_rag.reading.features import NAMES
from culture_rag.reading.fitting import Labelled, fit, labels, passage_labels, untrained
from culture_rag.reading.model import packaged_path, save
from culture_rag.settings import Settings

HERE = Path(__file__).resolve().parent
# First-stage candidates the cross-encoder reads. 30 wins over 20 on validation (objective
# 0.557 -> 0.565 simulated; paired bootstrap +0.013, 90% interval +0.001..+0.025; bench/README.md,
# session 17). It cost ~110 ms a question until the pairs ran two at a time, one core each
# (session 18), which made 30 pairs cheaper than 20 had been.
RERANK_TOP = 30


def train_questions(shared: Path) -> list[PooledQuestion]:
    """Train questions with something to label by (dev_aragog has reference answers only), in
    every language: a Chinese or Russian one is read as `ask` reads it, translated first."""
    chosen = select(pool(shared, HERE / "own_broad.jsonl"), read_split(HERE / "split.json"), "train")
    return [q for q in chosen if not q.question.answerable or q.question.evidence or q.question.key_points]


def read_all(questions: list[PooledQuestion], shared: Path, cache: Path, reader: FittedAnswerer, settings: Settings) -> list[Labelled]:
    records = []
    found = collections(shared)
    for name in sorted({q.collection for q in questions}):
        library = collection_library(found[name], cache, settings)
        assistant = Assistant(library=library, reader=reader, answerer="fitted")
        ids = {p.source: p.paper_id for p in library.snapshot.papers}
        mine = [q for q in questions if q.collection == name]
        for pq in mine:
            hits, reading = assistant.read(pq.question.question, [ids[pq.scope]] if pq.scope else None)
            quotes = [hits[c.hit].chunk.sentence_text(c.span) for c in reading.cands]
            cited_ok = passage_labels([hits[c.hit].chunk.text for c in reading.cands], [hits[c.hit].paper.source for c in reading.cands], pq.question)
            records.append(Labelled(pq.question, reading, labels(quotes, pq.question), tuple(c.text for c in reading.cands), cited_ok=cited_ok,
                                    group=" ".join(pq.documents)))
        print(f"read {len(mine)} {name} questions", file=sys.stderr)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "culture-rag" / "eval")
    parser.add_argument("--out", type=Path, default=packaged_path())
    parser.add_argument("--limit", type=int, default=0, help="fit on the first N train questions only (tests)")
    parser.add_argument("--no-reranker", action="store_true", help="fit without the cross-encoder's scores")
    args = parser.parse_args()
    settings = Settings()
    reranker = None
    if not args.no_reranker:
        from culture_rag.answer.rerank import OnnxCrossEncoder

        reranker = OnnxCrossEncoder(threads=settings.reranker_threads)
    questions = train_questions(args.shared)
    questions = questions[: args.limit] if args.limit else questions
    records = read_all(questions, args.shared, args.cache, FittedAnswerer(untrained(RERANK_TOP), reranker), settings)
    model, figures = fit(records, RERANK_TOP)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    model = replace(model, fitted_on=f"bench/quality/split.json train at {commit}: {model.fitted_on}")
    sha = save(model, args.out)
    print(f"{args.out}: sha256 {sha}")
    print(model.fitted_on)
    print("selection:", {k: getattr(model, k) for k in ("decline_below", "keep_above", "max_sentences")})
    print("train figures:", {k: round(v, 3) for k, v in figures.items()})
    for name, coef in sorted(zip(NAMES, model.sentence.coef), key=lambda t: -abs(t[1]))[:12]:
        print(f"  {name:22} {coef:+.3f}")


if __name__ == "__main__":
    main()
