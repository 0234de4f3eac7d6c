"""Try a change to the fitted reader's learning or selection without re-reading every question.

    .venv/bin/python bench/quality/experiment.py read      # read train and validation once (minutes)
    .venv/bin/python bench/quality/experiment.py fit       # fit on train; print train and validation aggregates

`read` stores each question's candidates (features, labels, whether the cited passage holds gold
evidence) in ~/.cache/culture-rag/readings-<split>.npz (no pickle). `fit` fits on train exactly
as bench/quality/fit.py does and scores both splits by simulation: validation is only ever
printed as aggregates. A change that wins here is then confirmed by bench/quality/run.py."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from culture_rag.evaluate.scoring import Question
from culture_rag.reading.answerer import FittedAnswerer, Reading, answerable_row
from culture_rag.reading.candidates import Candidate
from culture_rag.reading.features import NAMES, compare_columns
from culture_rag.reading.fitting import FOLDS, GRID, LEARNERS, OBJECTIVE, Labelled, fit, objective, score_records, simulate
from culture_rag.reading.keep import DEPTH
from culture_rag.settings import Settings
from culture_rag.types import Span

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fit import RERANK_TOP, read_all  # noqa: E402

CACHE = Path.home() / ".cache" / "culture-rag"
# Answerable questions by kind, from their sets: the held-out sets judge QASPER-style evidence,
# factoid citations and broad key points separately.
KINDS = {"qasper": ("qasper-train", "qasper-dev"), "factual": ("xquad", "dev_seed"), "broad": ("dev_broad", "own_broad")}


def questions_of(split_name: str, shared: Path):
    from culture_rag.evaluate.pool import pool, read_split, select

    chosen = select(pool(shared, HERE / "own_broad.jsonl"), read_split(HERE / "split.json"), split_name)
    return [q for q in chosen if not q.question.answerable or q.question.evidence or q.question.key_points]  # as fit.py


def save(records: list[Labelled], path: Path) -> None:
    sizes = [len(r.labels) for r in records]
    cands = [c for r in records for c in r.reading.cands]
    np.savez(
        path,
        sizes=np.array(sizes), x=np.vstack([r.reading.x for r in records if len(r.labels)]),
        labels=np.concatenate([r.labels for r in records]), vectors=np.array([c.vector for c in cands]),
        spans=np.array([(c.span.start, c.span.end) for c in cands]), first=np.concatenate([r.reading.first_stage for r in records]),
        hits=np.array([c.hit for c in cands]),
        cited_ok=np.concatenate([r.cited_ok if r.cited_ok is not None else np.zeros(len(r.labels), bool) for r in records]),
        judged=np.array([r.cited_ok is not None for r in records]),
    )
    meta = [{"q": r.question.__dict__, "group": r.group, "texts": list(r.texts), "papers": [c.paper_id for c in r.reading.cands]} for r in records]
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


def load(path: Path) -> list[Labelled]:
    with np.load(path) as npz:  # each npz[key] reads the whole array again: once each
        data = {key: npz[key] for key in npz.files}
    if "cited_ok" not in data:
        raise SystemExit(f"{path}: readings from before passage labels; run `experiment.py read` again")
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    if meta and "group" not in meta[0]:
        raise SystemExit(f"{path.with_suffix('.json')}: readings from before folds by document; run `experiment.py read` again")
    out, at = [], 0
    hits, cited_ok = data["hits"], data["cited_ok"]
    for size, m, judge in zip(data["sizes"], meta, data["judged"]):
        q = Question(**{k: tuple(tuple(p) for p in v) if k == "key_points" else tuple(v) if isinstance(v, list) else v for k, v in m["q"].items()})
        sl = slice(at, at + size)
        cands = tuple(Candidate(int(h), 0, t, Span(int(a), int(b)), v, p) for h, t, (a, b), v, p in zip(hits[sl], m["texts"], data["spans"][sl], data["vectors"][sl], m["papers"]))
        x = data["x"][sl]
        reading = Reading(cands, x, np.zeros(size), answerable_row(x, np.zeros(size)), data["first"][sl])
        out.append(Labelled(q, reading, data["labels"][sl], tuple(m["texts"]), cited_ok=cited_ok[sl] if judge else None, group=m["group"]))
        at += size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("read", "fit"))
    parser.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared")
    parser.add_argument("--cache", type=Path, default=CACHE / "eval")
    parser.add_argument("--learner", choices=LEARNERS, default="listwise")
    parser.add_argument("--folds", type=int, default=FOLDS, help="choose the selection constants on scores cross-fitted over this many folds (1: on the models' own scores)")
    parser.add_argument("--weights", type=json.loads, default=OBJECTIVE, help='the selection objective, e.g. \'{"evidence_found": 0.5, "key_points": 0.25, "citation_precision": 0.25}\'')
    parser.add_argument("--most", type=int, default=GRID[2][-1], choices=range(1, DEPTH + 1), metavar=f"1..{DEPTH}",
                        help="search the most sentences an answer quotes up to this (the shipped grid stops at 5: the objective grows with length, see docs/limits.md)")
    args = parser.parse_args()
    if args.step == "read":
        from culture_rag.answer.rerank import OnnxCrossEncoder
        from culture_rag.reading.fitting import untrained

        settings = Settings()
        reader = FittedAnswerer(untrained(RERANK_TOP), OnnxCrossEncoder(threads=settings.reranker_threads))
        for split_name in ("train", "validation"):
            records = read_all(questions_of(split_name, args.shared), args.shared, args.cache, reader, settings)
            save(records, CACHE / f"readings-{split_name}.npz")
        return
    train, validation = load(CACHE / "readings-train.npz"), load(CACHE / "readings-validation.npz")
    model, figures = fit(train, RERANK_TOP, args.learner, args.weights, args.folds, (*GRID[:2], tuple(range(1, args.most + 1))))
    print("selection:", {k: getattr(model, k) for k in ("decline_below", "keep_above", "max_sentences")},
          f"chosen at a cross-fitted train objective of {figures['objective']:.3f}")
    for name, records in (("train", train), ("validation", validation)):
        figures = evaluate(records, model)
        figures["objective"] = objective(figures, args.weights)
        figures["topical_abstention"] = topical_abstention(records, model)
        print(f"{name:11}", {k: round(v, 3) for k, v in figures.items()})
        set_of = {pq.question.id: pq.set_name for pq in questions_of(name, args.shared)}
        for kind, sets in KINDS.items():  # the kinds the held-out judges score apart
            f = evaluate([r for r in records if set_of.get(r.question.id) in sets], model)
            print(f"  {kind:9}", {k: round(f[k], 3) for k in ("evidence_found", "citation_precision", "key_points", "false_abstention", "words_p50")})


def without_evidence(r: Labelled) -> Labelled | None:
    """An answerable question read as if its paper lacked the passages that hold its evidence:
    an unanswerable question on the paper's own topic, the kind a user asks of a paper that
    does not cover it. The pool's unanswerable questions are mostly QASPER's or about another
    collection; this is the closest it gets to a paper that simply does not say.

    Simulated on the cached reading: the candidates of those passages (and any quoting the
    evidence) are dropped and the columns that compare a candidate with the others (gaps and
    ranks) recomputed. Candidates the first stage now ranks among the best 20 keep the lowest
    cross-encoder score, as they were not read: the figure flatters abstention a little."""
    if not r.question.answerable or r.cited_ok is None or not r.cited_ok.any():
        return None
    keep = ~(r.cited_ok | r.labels)
    if keep.sum() < 2:
        return None
    col = {name: i for i, name in enumerate(NAMES)}
    x = r.reading.x[keep].copy()
    compare_columns(x, x[:, col["dense"]].copy(), np.expm1(x[:, col["bm25"]]), x[:, col["ce"]].copy())
    at = np.empty(len(keep), int)
    at[r.reading.first_stage] = np.arange(len(keep))
    cands = tuple(c for c, k in zip(r.reading.cands, keep) if k)
    reading = Reading(cands, x, np.zeros(len(cands)), answerable_row(x, np.zeros(len(cands))), np.argsort(at[keep], kind="stable"))
    question = replace(r.question, id=f"without-evidence-{r.question.id}", answerable=False, evidence=(), key_points=())
    return replace(r, question=question, reading=reading, labels=np.zeros(len(cands), bool),
                   texts=tuple(t for t, k in zip(r.texts, keep) if k), cited_ok=np.zeros(len(cands), bool))


def topical_abstention(records: list[Labelled], model) -> float:
    """The share of answerable questions declined once their evidence is gone (without_evidence)."""
    gone = [g for g in map(without_evidence, records) if g is not None]
    return evaluate(gone, model)["abstention"] if gone else 0.0


def evaluate(records: list[Labelled], model) -> dict[str, float]:
    """simulate() on records scored by `model` (as fit() scores train)."""
    return simulate(score_records(records, model.sentence, model.answerable), model)


if __name__ == "__main__":
    main()
