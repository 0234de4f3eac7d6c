"""Fitting the answerer's weights from labelled readings (bench/quality/fit.py runs it on the
train split). Deterministic: L-BFGS fits from zero, folds drawn by a hash of each question's
document and a grid search, no random state."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from culture_rag.evaluate.scoring import Question, citations_right, normalize
from culture_rag.reading.answerer import ANSWERABLE_NAMES, FittedAnswerer, Reading, answerable_row
from culture_rag.reading.features import NAMES
from culture_rag.reading.keep import KEEP_NAMES, keep_rows
from culture_rag.reading.model import AnswerModel, Linear, Trees

C = 1.0  # inverse L2 strength, on standardized features
# What the selection constants maximize on train: the share of answers quoting evidence, the
# key points made, and the share of citations that are right.
OBJECTIVE = {"evidence_found": 0.5, "key_points": 0.25, "precision": 0.25}
MAX_FALSE_ABSTENTION = 0.05  # the product's target: at most one answerable question in twenty declined
# The selection constants searched on train: decline threshold, least P(keep) of a further
# sentence, most sentences. The last stops at 5 by choice, not by fit: the objective grows with
# every sentence allowed (the fit takes the largest offered, 5, 6 or 8), buying evidence and key
# points with citation precision and words (docs/limits.md, `experiment.py fit --most 8`), so
# how long an answer may be is the product's short-answer limit.
GRID = (
    tuple(np.round(np.arange(0.05, 0.96, 0.05), 2)),
    (0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3),
    (1, 2, 3, 4, 5),
)
# Cross-fitting: the selection constants and the decline threshold are chosen on scores the
# models gave questions they were not fitted on (each fold's, from the other folds' models),
# as they will score a new paper's questions. Chosen on the models' own train scores, they
# trusted those scores too much: the threshold sat on the false-abstention limit and moved a
# grid step with any change to the readings (docs/limits.md, session 12).
FOLDS = 5


@dataclass
class Labelled:
    """One train question's reading with its candidates' labels."""

    question: Question
    reading: Reading
    labels: np.ndarray  # per candidate: its quote is gold evidence or makes a key point
    texts: tuple[str, ...]  # per candidate, as the answer shows it
    p_answerable: float = 0.0
    # per candidate: citing it counts as right by FORMAT.md's citation precision (its passage
    # holds gold evidence, or comes from a source paper when the question gives no evidence)
    cited_ok: np.ndarray | None = None
    group: str = ""  # the document it is about (the split's unit), which decides its fold


def fold_of(record: Labelled, folds: int) -> int:
    """A question's fold: a hash of its document, so a paper's questions share one fold."""
    key = record.group or record.question.id
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % folds


def untrained(rerank_top: int) -> AnswerModel:
    """Weights of the right shape that score nothing: for reading before the first fit."""
    zero = lambda names: Linear(tuple(names), (0.0,) * len(names), (1.0,) * len(names), (0.0,) * len(names), 0.0)  # noqa: E731
    return AnswerModel(zero(NAMES), zero(ANSWERABLE_NAMES), 0.0, zero(KEEP_NAMES), 1.0, 1, rerank_top)


def labels(quotes: list[str], q: Question) -> np.ndarray:
    """A quote is positive when it lies inside a gold evidence string or holds one (the
    evidence_in_quote metric), or makes one of the question's key points."""
    if not q.answerable:
        return np.zeros(len(quotes), bool)
    gold = [normalize(e) for e in q.evidence if e.strip()]
    points = [normalize(a) for point in q.key_points for a in point]
    out = []
    for quote in quotes:
        text = normalize(quote)
        out.append(any(text in g or g in text for g in gold) or any(a in text for a in points))
    return np.array(out, bool)


def passage_labels(passages: list[str], sources: list[str], q: Question) -> np.ndarray | None:
    """Per candidate, whether a citation of its passage is right, as citation precision judges
    it (scoring.citations_right); None when the question gives neither evidence nor sources."""
    right = citations_right(q, passages, sources)
    return None if right is None else np.array(right, bool)


def linear(x: np.ndarray, y: np.ndarray, names) -> Linear:
    if len(set(y.tolist())) < 2:  # one class or none (a --limit run): its rate, whatever the features
        rate = min(max(float(np.mean(y)) if len(y) else 0.0, 1e-3), 1 - 1e-3)
        return Linear(tuple(names), (0.0,) * len(names), (1.0,) * len(names), (0.0,) * len(names), float(np.log(rate / (1 - rate))))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, max_iter=5000).fit((x - mean) / scale, y)
    return Linear(tuple(names), tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, model.coef_[0])), float(model.intercept_[0]))


def listwise(groups: list[tuple[np.ndarray, np.ndarray]], names) -> Linear:
    """A linear scorer fitted to put each question's evidence first among its own candidates.

    An answer quotes the best few candidates of one question, so what matters is their order
    within the question, not a probability comparable across questions. For each train question
    with evidence among its candidates, the loss is -log of the softmax probability its evidence
    gets (ListNet's loss with several positives), plus the same L2 penalty (C) as the
    regressions, on standardized features. L-BFGS from zero: the same data gives the same weights.

    The scores are then put on a probability scale by a one-feature logistic regression over
    every candidate, so the selection constants and the answerable model read probabilities as
    they did from the pointwise regression (`linear`)."""
    from scipy.optimize import minimize

    x = np.vstack([g for g, _ in groups])
    y = np.concatenate([labels for _, labels in groups])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    standard = [((g - mean) / scale, labels) for g, labels in groups if labels.any()]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.5 * float(w @ w) / C, w / C
        for z, labels in standard:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            gold = float(p[labels].sum())
            total -= np.log(gold)
            grad = grad - z.T @ (np.where(labels, p / gold, 0.0) - p)
        return total, grad

    w = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 1000}).x
    calibration = LogisticRegression(C=C, max_iter=5000).fit((((x - mean) / scale) @ w)[:, None], y)
    a, b = float(calibration.coef_[0, 0]), float(calibration.intercept_[0])
    return Linear(tuple(names), tuple(map(float, mean)), tuple(map(float, scale)), tuple(float(a * v) for v in w), b)


def trees(x: np.ndarray, y: np.ndarray, names, max_iter: int = 200) -> Trees:
    """Gradient-boosted trees (fixed seed, no early stopping: the same data gives the same trees),
    exported to plain arrays (model.Trees)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
        early_stopping=False, random_state=0,
    ).fit(x, y)
    nodes = [predictor[0].nodes for predictor in clf._predictors]  # the fitted trees as record arrays
    if any(n["is_categorical"].any() for n in nodes):
        raise ValueError("categorical splits cannot be exported")
    out = Trees(
        tuple(names), float(np.ravel(clf._baseline_prediction)[0]),
        *(tuple(tuple(n[field].tolist()) for n in nodes) for field in ("feature_idx", "num_threshold", "left", "right", "missing_go_to_left", "is_leaf", "value")),
    )
    # The export must predict what sklearn predicts, or it is not the model that was fitted.
    if not np.allclose(out.logit(x[:500]), clf.decision_function(x[:500]), atol=1e-6):
        raise AssertionError("exported trees disagree with scikit-learn's")
    return out


def simulate(records: list[Labelled], model: AnswerModel, choose: Callable[[Labelled], list[int]] | None = None) -> dict[str, float]:
    """The train figures `model`'s selection constants give on readings already scored; with
    `choose`, the figures of another selection (a record's chosen candidates), same decline."""
    reader = FittedAnswerer(model)
    choose = choose or (lambda r: reader.choose(r.reading))
    found, precision, cited, declined_ok, false_declines, kp, words = [], [], [], [], [], [], []
    for r in records:
        answered = bool(len(r.reading.cands)) and r.p_answerable >= model.decline_below
        if not r.question.answerable:
            declined_ok.append(not answered)
            if answered and r.cited_ok is not None:  # every quote given for it is a wrong citation
                cited.extend([False] * len(choose(r)))
            continue
        false_declines.append(not answered)
        chosen = choose(r) if answered else []
        found.append(bool(chosen) and bool(r.labels[chosen].any()))
        if chosen:
            precision.append(float(r.labels[chosen].mean()))
            if r.cited_ok is not None:
                cited.extend(bool(v) for v in r.cited_ok[chosen])
            words.append(sum(len(r.texts[i].split()) for i in chosen))
        if r.question.key_points:
            text = normalize(" ".join(r.texts[i] for i in chosen))
            kp.append(float(np.mean([any(normalize(a) in text for a in p) for p in r.question.key_points])) if chosen else 0.0)
    mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
    out = {"evidence_found": mean(found), "precision": mean(precision), "citation_precision": mean(cited), "key_points": mean(kp),
           "abstention": mean(declined_ok), "false_abstention": mean(false_declines),
           "words_p50": float(np.median(words)) if words else 0.0}
    return out


def objective(figures: dict[str, float], weights: dict[str, float] = OBJECTIVE) -> float:
    return sum(w * figures[name] for name, w in weights.items())


LEARNERS = ("listwise", "pointwise", "trees")


def score_records(records: list[Labelled], sentence: Linear | Trees, answerable: Linear | None = None) -> list[Labelled]:
    """`records` with the sentence scorer's logits, their answerable row, and P(answerable)."""
    out = []
    for r in records:
        logits = sentence.logit(r.reading.x) if len(r.labels) else np.zeros(0)
        reading = replace(r.reading, logits=logits, answerable_x=answerable_row(r.reading.x, logits))
        p = float(answerable.probability(reading.answerable_x[None, :])[0]) if answerable is not None else 0.0
        out.append(replace(r, reading=reading, p_answerable=p))
    return out


def models(records: list[Labelled], learner: str = "listwise") -> tuple[Linear | Trees, Linear, int, int]:
    """The sentence scorer (`learner`: one of LEARNERS) and the answerable regression fitted on
    `records`; then how many candidates and positives the scorer learned from."""
    answerable = [r for r in records if r.question.answerable and len(r.labels)]
    x = np.vstack([r.reading.x for r in answerable])
    y = np.concatenate([r.labels for r in answerable])
    if learner == "listwise":
        sentence = listwise([(r.reading.x, r.labels) for r in answerable], NAMES)
    elif learner == "pointwise":
        sentence = linear(x, y, NAMES)
    elif learner == "trees":
        sentence = trees(x, y, NAMES)
    else:
        raise ValueError(f"learner must be one of {LEARNERS}, not {learner!r}")
    scored = score_records(records, sentence)
    rows = np.array([r.reading.answerable_x for r in scored])
    return sentence, linear(rows, np.array([r.question.answerable for r in scored]), ANSWERABLE_NAMES), len(y), int(y.sum())


def keep_model(records: list[Labelled]) -> Linear:
    """The keep model (keep.py) fitted on scored records: each answerable question's candidates
    ranked 2..DEPTH, labelled as the sentence scorer's candidates are."""
    xs, ys = [np.zeros((0, len(KEEP_NAMES)))], [np.zeros(0, bool)]
    for r in records:
        if r.question.answerable and len(r.labels):
            idx, rows = keep_rows(r.reading.x, r.reading.logits, r.reading.cands)
            if idx:
                xs.append(rows)
                ys.append(r.labels[idx])
    return linear(np.vstack(xs), np.concatenate(ys), KEEP_NAMES)


def _fold_keep(scored: list[Labelled], folds: int) -> dict[int, tuple[int, Linear]]:
    """Per record (by id): its fold, and the keep model fitted on the other folds' records."""
    fold = [fold_of(r, folds) for r in scored]
    models = {k: keep_model([r for r, f in zip(scored, fold) if f != k]) for k in range(folds)}
    return {id(r): (f, models[f]) for r, f in zip(scored, fold)}


def _chooser(model: AnswerModel, own_keep: dict[int, tuple[int, Linear]] | None) -> Callable[[Labelled], list[int]] | None:
    """The selection with each record's own fold's keep model (None: the model's own)."""
    if own_keep is None:
        return None
    readers = {f: FittedAnswerer(replace(model, keep=m)) for f, m in own_keep.values()}
    return lambda r: readers[own_keep[id(r)][0]].choose(r.reading)


def _folds(records: list[Labelled], folds: int) -> list[tuple[list[Labelled], list[Labelled]]]:
    """Per fold: the records its models are fitted on (the other folds'), and its own."""
    fold = [fold_of(r, folds) for r in records]
    return [([r for r, f in zip(records, fold) if f != k], [r for r, f in zip(records, fold) if f == k]) for k in range(folds)]


def _foldable(records: list[Labelled], folds: int) -> bool:
    """Every fold's complement has answerable questions with evidence and unanswerable ones."""
    return all(
        any(r.question.answerable and r.labels.any() for r in rest) and not all(r.question.answerable for r in rest)
        for rest, _ in _folds(records, folds)
    )


def cross_scored(records: list[Labelled], learner: str = "listwise", folds: int = FOLDS) -> list[Labelled]:
    """Every record scored by models fitted on the other folds (by document)."""
    out = []
    for rest, own in _folds(records, folds):
        sentence, answerable, _, _ = models(rest, learner)
        out += score_records(own, sentence, answerable)
    return out


def fit(records: list[Labelled], rerank_top: int, learner: str = "listwise", weights: dict[str, float] = OBJECTIVE,
        folds: int = FOLDS, grid: tuple[tuple, tuple, tuple] = GRID) -> tuple[AnswerModel, dict[str, float]]:
    """The sentence scorer and the answerable regression fitted on every record, then the
    selection constants that maximize the objective on cross-fitted scores (`folds` < 2: on the
    models' own scores), searched over `grid`. Returns the model and its figures on the scores
    it was chosen on."""
    sentence, answerable_model, n, positive = models(records, learner)
    if folds > 1 and not _foldable(records, folds):  # too few questions (a --limit run): say so in the file
        folds = 1
    scored = cross_scored(records, learner, folds) if folds > 1 else score_records(records, sentence, answerable_model)
    keep = keep_model(scored)  # on cross-fitted scores: the scores a new paper's sentences will get
    # How much to quote: the constants that give the best answers when nothing is declined, each
    # fold's further sentences kept by a keep model fitted on the other folds, as its scores are.
    own_keep = _fold_keep(scored, folds) if folds > 1 else None
    best: tuple[dict[str, float], AnswerModel] | None = None
    for above, most in itertools.product(*grid[1:]):
        model = AnswerModel(sentence, answerable_model, 0.0, keep, float(above), int(most), rerank_top)
        figures = simulate(scored, model, _chooser(model, own_keep))
        figures["objective"] = objective(figures, weights)
        if best is None or figures["objective"] > best[0]["objective"] + 1e-12:
            best = (figures, model)
    assert best is not None
    figures, model = best
    # When to decline: the highest threshold that keeps the false abstention within the target,
    # so that as many unanswerable questions as possible are declined at that cost.
    for decline in sorted(grid[0], reverse=True):
        trial = simulate(scored, replace(model, decline_below=float(decline)), _chooser(model, own_keep))
        trial["objective"] = objective(trial, weights)
        if trial["false_abstention"] <= MAX_FALSE_ABSTENTION:
            figures, model = trial, replace(model, decline_below=float(decline))
            break
    return replace(model, fitted_on=f"{len(records)} questions, {n} candidates ({positive} positive)" + (f", constants chosen on {folds} folds" if folds > 1 else ", constants chosen on the models' own scores")), figures
