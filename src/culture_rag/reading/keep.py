"""Which further sentences an answer quotes after its best one: the columns of a fitted keep model.

The best candidate is always quoted. Each of the next ones (ranked 2 to DEPTH by the sentence
scorer) is a row saying how close it comes to the best (their logits and softmax shares, whether
it stands in the same passage or paper, its rank and cross-encoder score) and what kind of
question asks; the keep model (model.AnswerModel.keep, a logistic regression fitted on train's
cross-fitted scores) gives P(this sentence is evidence too). It replaced a hand-set rule
("keep a sentence with 0.3 of the best's probability") in session 16: one rule served factual
questions, whose first sentence is right 0.82 of the time, and QASPER's, where it is right 0.39
of the time, so factual answers quoted sentences that were wrong (bench/README.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from culture_rag.reading.candidates import Candidate
from culture_rag.reading.features import NAMES

DEPTH = 8  # the best candidate and the next seven: deeper ones were evidence too seldom to learn from
QUESTION_FACTS = ("question_words", "number_question", "yes_no_question", "who_question")
KEEP_NAMES = (
    "logit", "best_logit", "gap", "share", "best_share", "same_passage", "same_paper", "reciprocal_rank",
    "ce", "best_ce", *QUESTION_FACTS,
)
_COL = {name: i for i, name in enumerate(NAMES)}


def keep_rows(x: np.ndarray, logits: np.ndarray, cands: Sequence[Candidate]) -> tuple[list[int], np.ndarray]:
    """The candidates ranked 2..DEPTH (indices, best first) and their rows for the keep model,
    from the candidates' features `x` and the sentence scorer's `logits`."""
    if len(logits) < 2:
        return [], np.zeros((0, len(KEEP_NAMES)))
    order = np.argsort(-logits, kind="stable")
    best = order[0]
    share = np.exp(logits - logits.max())
    share /= share.sum()
    facts = [x[best, _COL[f]] for f in QUESTION_FACTS]  # the same for every candidate of a question
    rows = [
        [
            logits[i], logits[best], logits[i] - logits[best], share[i], share[best],
            float(cands[i].hit == cands[best].hit), float(cands[i].paper_id == cands[best].paper_id), 1.0 / rank,
            x[i, _COL["ce"]], x[best, _COL["ce"]], *facts,
        ]
        for rank, i in enumerate(order[1:DEPTH], start=2)
    ]
    return [int(i) for i in order[1:DEPTH]], np.array(rows, np.float64)
