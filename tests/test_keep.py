"""The keep model: which further sentences an answer quotes after its best one (reading/keep.py).
Its rows, the choice it drives, and its fitting on cross-fitted scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from culture_rag.evaluate.scoring import Question
from culture_rag.reading.answerer import FittedAnswerer, Reading, answerable_row
from culture_rag.reading.candidates import Candidate
from culture_rag.reading.features import NAMES
from culture_rag.reading.fitting import Labelled, fold_of, keep_model, untrained
from culture_rag.reading.keep import DEPTH, KEEP_NAMES, keep_rows
from culture_rag.reading.model import Linear
from culture_rag.types import Span

COL = {name: i for i, name in enumerate(NAMES)}
K = {name: i for i, name in enumerate(KEEP_NAMES)}


def _reading(logits, hits, papers=None, x=None) -> Reading:
    n = len(logits)
    papers = papers or ["p"] * n
    x = np.zeros((n, len(NAMES))) if x is None else x
    vectors = np.eye(max(n, 4))[:n, :4] if n <= 4 else np.eye(n)  # orthogonal: no sentence repeats another
    cands = tuple(Candidate(h, j, f"s{j}", Span(100 * j, 100 * j + 50), vectors[j], p) for j, (h, p) in enumerate(zip(hits, papers)))
    logits = np.asarray(logits, float)
    return Reading(cands, x, logits, answerable_row(x, logits), np.arange(n))


def test_rows_compare_each_next_candidate_with_the_best():
    x = np.zeros((4, len(NAMES)))
    x[:, COL["ce"]] = [0.5, 3.0, 1.0, -2.0]
    x[1, COL["question_words"]] = 7.0  # a question fact is read off the best candidate's row
    x[1, COL["number_question"]] = 1.0
    cands = _reading([0.0] * 4, hits=[0, 5, 5, 6], papers=["a", "b", "b", "a"]).cands
    idx, rows = keep_rows(x, np.array([0.1, 2.0, 1.0, -1.0]), cands)
    assert idx == [2, 0, 3]  # by logit, the best (1) left out
    assert rows.shape == (3, len(KEEP_NAMES))
    assert rows[:, K["gap"]].tolist() == pytest.approx([-1.0, -1.9, -3.0])
    assert rows[:, K["same_passage"]].tolist() == [1.0, 0.0, 0.0]
    assert rows[:, K["same_paper"]].tolist() == [1.0, 0.0, 0.0]
    assert rows[:, K["reciprocal_rank"]].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 4])
    assert rows[:, K["ce"]].tolist() == [1.0, 0.5, -2.0] and set(rows[:, K["best_ce"]]) == {3.0}
    assert set(rows[:, K["question_words"]]) == {7.0} and set(rows[:, K["number_question"]]) == {1.0}
    shares = np.exp([2.0, 1.0, 0.1, -1.0]) / np.exp([2.0, 1.0, 0.1, -1.0]).sum()
    assert rows[0, K["share"]] == pytest.approx(shares[1]) and rows[0, K["best_share"]] == pytest.approx(shares[0])
    # Only the next DEPTH - 1 candidates are rows; a lone candidate has none.
    many = _reading(np.arange(20.0), hits=list(range(20)))
    assert len(keep_rows(many.x, many.logits, many.cands)[0]) == DEPTH - 1
    lone = _reading([1.0], hits=[0])
    assert keep_rows(lone.x, lone.logits, lone.cands)[0] == []


def _keep_same_passage() -> Linear:
    """A keep model that trusts a sentence from the best one's passage (P 0.92) and nothing else (P 0.08)."""
    coef = [0.0] * len(KEEP_NAMES)
    coef[K["same_passage"]] = 5.0
    return Linear(KEEP_NAMES, (0.0,) * len(KEEP_NAMES), (1.0,) * len(KEEP_NAMES), tuple(coef), -2.5)


def test_the_answer_quotes_the_best_sentence_and_those_the_keep_model_accepts():
    model = replace(untrained(10), keep=_keep_same_passage(), keep_above=0.5, max_sentences=5)
    reading = _reading([3.0, 2.5, 2.0, 1.0, 0.5], hits=[0, 1, 0, 1, 0])
    assert FittedAnswerer(model).choose(reading) == [0, 2, 4]  # the best, then its passage's sentences
    assert FittedAnswerer(replace(model, max_sentences=2)).choose(reading) == [0, 2]
    assert FittedAnswerer(replace(model, keep_above=0.05)).choose(reading) == [0, 1, 2, 3, 4]
    assert FittedAnswerer(replace(model, keep_above=0.95)).choose(reading) == [0]
    # A further sentence that says the best one again is left out, however likely.
    same_text = replace(reading, cands=(reading.cands[0], reading.cands[1], replace(reading.cands[2], span=Span(0, 50)), *reading.cands[3:]))
    assert FittedAnswerer(model).choose(same_text) == [0, 4]


def _records(seed: int) -> list[Labelled]:
    """Questions whose further evidence stands in the best sentence's passage."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(40):
        n = 8
        hits = rng.integers(0, 3, size=n).tolist()
        logits = np.sort(rng.normal(size=n))[::-1].copy()
        labels = np.array([h == hits[0] and rng.random() < 0.8 for h in hits])
        reading = _reading(logits, hits, x=rng.normal(size=(n, len(NAMES))))
        out.append(Labelled(Question(str(i), "q", True), reading, labels, tuple(c.text for c in reading.cands), group=f"paper-{i // 4}"))
    return out


def test_the_keep_model_learns_from_the_next_candidates_labels():
    model = keep_model(_records(1))
    coef = dict(zip(KEEP_NAMES, model.coef))
    assert max(coef, key=lambda k: abs(coef[k])) == "same_passage" and coef["same_passage"] > 0
    assert keep_model(_records(1)) == model  # the same data, the same weights
    # No answerable question with a further candidate: a model of the rate, not a crash.
    lone = keep_model([replace(r, question=replace(r.question, answerable=False)) for r in _records(1)])
    assert set(lone.coef) == {0.0}


def test_selection_keeps_each_fold_s_sentences_with_a_keep_model_that_never_saw_the_fold():
    from culture_rag.reading.fitting import _fold_keep

    records = _records(2)
    own = _fold_keep(records, 4)
    for k in range(4):
        held_out = [r for r in records if fold_of(r, 4) == k]
        without = keep_model([r for r in records if fold_of(r, 4) != k])
        assert held_out and all(own[id(r)] == (k, without) for r in held_out)
    assert len({m for _, m in own.values()}) == 4 and keep_model(records) not in {m for _, m in own.values()}
