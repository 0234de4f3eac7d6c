"""The next candidate for the answer's length (bench/README.md, session 15): a fitted model of
which further sentences an answer keeps, in place of the shipped "at least 0.3 of the best's
probability" rule. Simulated on the cached readings of `experiment.py read`:

    .venv/bin/python bench/quality/keep_trial.py                # train, cross-fitted
    .venv/bin/python bench/quality/keep_trial.py --validation   # and validation's aggregates

For each answerable question, the candidates ranked 2 to DEPTH by the sentence scorer are rows;
the columns say how close each is to the best (logits, softmax shares, same passage or paper,
rank, cross-encoder scores) and what kind of question it is; the label is the candidate's own
(its quote is evidence or makes a key point). A logistic regression fitted on train's
cross-fitted scores gives P(keep); an answer keeps the best sentence and those with P(keep) ≥ t,
at most `--most`. Figures by question kind (from the question ids: QASPER, factual (XQuAD,
dev_seed), broad (dev_broad, our own)), since the held-out judges weigh them apart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiment import CACHE, load  # noqa: E402
from fit import RERANK_TOP  # noqa: E402

from culture_rag.reading import fitting  # noqa: E402
from culture_rag.reading.answerer import _repeats  # noqa: E402
from culture_rag.reading.features import NAMES  # noqa: E402

DEPTH = 8
QUESTION_FACTS = ("question_words", "number_question", "yes_no_question", "who_question")
COL = {name: i for i, name in enumerate(NAMES)}


def kind(record) -> str:
    qid = record.question.id
    if not record.question.answerable:
        return "unanswerable"
    if qid.startswith("qasper"):
        return "qasper"
    if qid.startswith(("own", "db")):
        return "broad"
    return "factual"  # XQuAD and dev_seed


def rows(record) -> tuple[list[int], np.ndarray]:
    """The candidates ranked 2..DEPTH and their columns."""
    logits, reading = record.reading.logits, record.reading
    if len(logits) < 2:
        return [], np.zeros((0, 10 + len(QUESTION_FACTS)))
    order = np.argsort(-logits, kind="stable")
    best = order[0]
    share = np.exp(logits - logits.max())
    share /= share.sum()
    x = reading.x
    out = []
    for rank, i in enumerate(order[1:DEPTH], start=2):
        out.append([
            logits[i], logits[best], logits[i] - logits[best], share[i], share[best],
            float(reading.cands[i].hit == reading.cands[best].hit), float(reading.cands[i].paper_id == reading.cands[best].paper_id),
            1.0 / rank, x[i, COL["ce"]], x[best, COL["ce"]], *(x[i, COL[f]] for f in QUESTION_FACTS),
        ])
    return [int(i) for i in order[1:DEPTH]], np.array(out)


def fit_keep(records):
    xs, ys = [], []
    for r in records:
        if r.question.answerable and len(r.labels):
            idx, x = rows(r)
            if idx:
                xs.append(x)
                ys.append(r.labels[idx])
    x, y = np.vstack(xs), np.concatenate(ys)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=fitting.C, max_iter=5000).fit((x - mean) / scale, y)
    return lambda rows_: model.predict_proba((rows_ - mean) / scale)[:, 1]


def chooser(keep_of, threshold: float, most: int, cosine: float):
    def choose(record) -> list[int]:
        if not len(record.reading.logits):
            return []
        chosen = [int(np.argmax(record.reading.logits))]
        idx, x = rows(record)
        for i, p in zip(idx, keep_of(record)(x) if idx else []):
            if len(chosen) >= most:
                break
            if p >= threshold and not any(_repeats(record.reading.cands[i], record.reading.cands[j], cosine) for j in chosen):
                chosen.append(i)
        return chosen
    return choose


def figures(records, model, choose=None) -> dict[str, dict[str, float]]:
    """fitting.simulate per kind, with `choose(record)` in place of the shipped selection."""
    out = {k: fitting.simulate([r for r in records if kind(r) == k], model, choose) for k in ("qasper", "factual", "broad")}
    out["all"] = fitting.simulate(records, model, choose)
    return out


def show(name: str, f: dict[str, dict[str, float]]) -> None:
    a = f["all"]
    print(f"{name:34} objective {fitting.objective(a):.3f} evidence {a['evidence_found']:.3f} key points {a['key_points']:.3f} "
          f"citation precision {a['citation_precision']:.3f} words {a['words_p50']:.0f} | QASPER evidence {f['qasper']['evidence_found']:.2f}, "
          f"factual citation precision {f['factual']['citation_precision']:.2f}, broad key points {f['broad']['key_points']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--most", type=int, default=5)
    parser.add_argument("--validation", action="store_true", help="also print validation's aggregates at the threshold train chooses")
    args = parser.parse_args()
    train = load(CACHE / "readings-train.npz")
    model, _ = fitting.fit(train, RERANK_TOP)
    scored = fitting.cross_scored(train)
    folds = [fitting.fold_of(r, fitting.FOLDS) for r in scored]
    own = {}
    for k in range(fitting.FOLDS):  # each fold's keep model fitted on the other folds, as the scores are
        keep = fit_keep([r for r, f in zip(scored, folds) if f != k])
        own.update({id(r.reading): keep for r, f in zip(scored, folds) if f == k})
    show("train, shipped selection", figures(scored, model))
    best = None
    for threshold in (0.02, 0.05, 0.075, 0.1, 0.15, 0.2):
        f = figures(scored, model, chooser(lambda r: own[id(r.reading)], threshold, args.most, model.redundant_cosine))
        show(f"train, keep model P >= {threshold}", f)
        if best is None or fitting.objective(f["all"]) > best[0] + 1e-12:
            best = (fitting.objective(f["all"]), threshold)
    print(f"train chooses P >= {best[1]} by the shipped objective")
    if args.validation:
        validation = load(CACHE / "readings-validation.npz")
        scored_v = fitting.score_records(validation, model.sentence, model.answerable)
        keep = fit_keep(scored)
        show("validation, shipped selection", figures(scored_v, model))
        show(f"validation, keep model P >= {best[1]}", figures(scored_v, model, chooser(lambda r: keep, best[1], args.most, model.redundant_cosine)))


if __name__ == "__main__":
    main()
