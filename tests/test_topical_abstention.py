"""bench/quality/experiment.py's evidence-removed twins: an answerable question read again without
the passages that hold its evidence, which the reader should decline (topical_abstention)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from culture_rag.evaluate.scoring import Question
from culture_rag.reading.answerer import Reading, answerable_row
from culture_rag.reading.candidates import Candidate
from culture_rag.reading.features import NAMES
from culture_rag.reading.fitting import Labelled
from culture_rag.types import Span

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "quality"))
from experiment import without_evidence  # noqa: E402

COL = {name: i for i, name in enumerate(NAMES)}


def _record(cited_ok, labels, ce, first_stage, answerable=True) -> Labelled:
    n = len(ce)
    x = np.zeros((n, len(NAMES)))
    x[:, COL["ce"]] = ce
    x[:, COL["dense"]] = np.linspace(0.9, 0.1, n)
    x[:, COL["bm25"]] = np.log1p(np.arange(n, 0, -1, dtype=float))
    cands = tuple(Candidate(i, 0, f"sentence {i}", Span(10 * i, 10 * i + 9), np.ones(3) / np.sqrt(3), "p") for i in range(n))
    reading = Reading(cands, x, np.zeros(n), answerable_row(x, np.zeros(n)), np.array(first_stage))
    q = Question("q1", "What is it?", answerable, evidence=("sentence 0",) if answerable else ())
    return Labelled(q, reading, np.array(labels, bool), tuple(c.text for c in cands), cited_ok=np.array(cited_ok, bool), group="doc")


def test_the_twin_drops_the_evidence_and_compares_what_is_left():
    r = _record(cited_ok=[True, True, False, False], labels=[True, False, False, False], ce=[5.0, 4.0, 1.0, -2.0], first_stage=[1, 0, 3, 2])
    twin = without_evidence(r)
    assert twin is not None
    assert not twin.question.answerable and twin.question.id == "without-evidence-q1"
    assert twin.question.evidence == () and twin.question.key_points == ()
    assert twin.texts == ("sentence 2", "sentence 3")
    assert not twin.labels.any() and not twin.cited_ok.any()
    x = twin.reading.x
    # the best of what is left is now the best: gaps and ranks are relative to the survivors
    assert x[:, COL["ce_gap"]].tolist() == [0.0, -3.0]
    assert x[:, COL["ce_rank"]].tolist() == [1.0, 0.5]
    assert x[:, COL["dense_gap"]].max() == 0.0 and x[:, COL["bm25_gap"]].max() == 1.0
    # the first stage keeps its order among the survivors (3 before 2, now indices 1 and 0)
    assert twin.reading.first_stage.tolist() == [1, 0]
    assert twin.reading.answerable_x[3] == 1.0  # the top cross-encoder score among the survivors


def test_no_twin_without_evidence_to_remove_or_with_too_little_left():
    assert without_evidence(_record([False, False, False], [False] * 3, [1.0, 0.5, 0.2], [0, 1, 2])) is None
    assert without_evidence(_record([True, True, False], [True, False, False], [1.0, 0.5, 0.2], [0, 1, 2])) is None
    unanswerable = _record([False, False, False], [False] * 3, [1.0, 0.5, 0.2], [0, 1, 2], answerable=False)
    assert without_evidence(unanswerable) is None
