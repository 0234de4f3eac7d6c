"""The key-point metrics of shared/eval/FORMAT.md, on hand-made answers whose expected scores
follow from how they were made."""

from __future__ import annotations

import json
import re
import statistics
import time

import pytest

from culture_rag.errors import CultureRagError
from culture_rag.evaluate.scoring import Outcome, Question, key_point_metrics, metrics, points_made, read_questions, run
from culture_rag.types import Answer, AnswerEvent, Timings

POINTS = (("top-level design", "overall plan"), ("brand",), ("regional advantage", "local strength"))


def outcome(question: Question, text: str, answered: bool = True, cited: tuple[str, ...] = ()) -> Outcome:
    return Outcome(question, (), (), text, answered, (), cited, 0, False, 1.0, 1.0)


def answer_making(points: tuple[tuple[str, ...], ...], made: list[bool]) -> str:
    """An answer that makes exactly the points marked in `made`, each through its last alternative,
    written with the markup and case FORMAT.md's normalization must see through."""
    parts = [f"The paper calls for **{p[-1].upper()}** [1]." for p, m in zip(points, made) if m]
    return " ".join(parts) or "It discusses something else [1]."


def test_points_are_matched_after_normalization():
    q = Question("q", "?", True, key_points=POINTS)
    for made in ([True, False, True], [False, True, False], [True, True, True]):
        assert points_made(outcome(q, answer_making(POINTS, made))) == made
    text = "A `top-level`\n  DESIGN and a br\\and."  # backticks, newline runs and backslashes fold away
    assert points_made(outcome(q, text)) == [True, True, False]


def test_a_declined_answer_makes_no_point():
    q = Question("q", "?", True, key_points=POINTS)
    declined = outcome(q, answer_making(POINTS, [True, True, True]), answered=False)
    assert points_made(declined) == [False, False, False]


def test_coverage_and_full_coverage_follow_the_points_made():
    plans = [[True, False, True], [True, True, True], [False, False, False], [False, True, False]]
    questions = [Question(f"q{i}", "?", True, key_points=POINTS) for i in range(len(plans))]
    outcomes = [outcome(q, answer_making(POINTS, made)) for q, made in zip(questions, plans)]
    # Questions the metrics must leave out: unanswerable ones, and answerable ones without key points.
    outcomes.append(outcome(Question("u", "?", False, key_points=POINTS), answer_making(POINTS, [True] * 3)))
    outcomes.append(outcome(Question("n", "?", True), "No key points here."))
    result = key_point_metrics(outcomes)
    assert result["key_point_coverage"] == pytest.approx(statistics.mean(sum(m) / len(m) for m in plans))
    assert result["full_coverage"] == pytest.approx(sum(all(m) for m in plans) / len(plans))


def test_source_precision_counts_citations_by_paper():
    right, wrong = "a.pdf", "b.pdf"
    with_sources = Question("s", "?", True, sources=(right,))
    unanswerable = Question("u", "?", False)
    no_sources = Question("n", "?", True)  # nothing to judge its citations by
    cites = {with_sources: (right, right, wrong), unanswerable: (right,), no_sources: (wrong, wrong)}
    outcomes = [outcome(q, "x [1]", cited=c) for q, c in cites.items()]
    judged = [s in q.sources for q, c in cites.items() if q is not no_sources for s in c]
    assert key_point_metrics(outcomes)["source_precision"] == pytest.approx(sum(judged) / len(judged))


def test_answer_words_median_is_over_answerable_questions_without_markers():
    texts = ["one two three [1].", "one two [1] three four five [2].", "a b c d e f g h i j k l"]
    outcomes = [outcome(Question(str(i), "?", True), t) for i, t in enumerate(texts)]
    outcomes.append(outcome(Question("u", "?", False), " ".join(["word"] * 500)))
    expected = statistics.median(len(re.sub(r"\s*\[\d+\]", "", t).split()) for t in texts)  # markers are not words
    assert key_point_metrics(outcomes)["answer_words_p50"] == expected
    assert metrics(outcomes)["answer_words_p50"] == expected  # reported with the other metrics


def test_sets_without_key_points_report_none():
    result = metrics([outcome(Question("q", "?", True), "x")])
    assert result["key_point_coverage"] is None and result["full_coverage"] is None


def test_key_points_are_read_and_checked(tmp_path):
    path = tmp_path / "set.jsonl"
    good = {"id": "a", "question": "?", "answerable": True, "key_points": [["x", "y"], ["z"]]}
    path.write_text(json.dumps(good) + "\n")
    assert read_questions(path)[0].key_points == (("x", "y"), ("z",))
    for bad in (["x"], [[]], [[1]], "x"):
        path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "key_points": bad}) + "\n")
        with pytest.raises(CultureRagError, match=r"set\.jsonl:2: .*key_points"):
            read_questions(path)


class TimedAssistant:
    """Streams one token after `delay` seconds, then the answer after as long again."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def search(self, question, k):
        return []

    def stream(self, question, mode=None):
        time.sleep(self.delay)
        yield AnswerEvent("token", "x")
        time.sleep(self.delay)
        yield AnswerEvent("answer", "x", Answer(question, "x [1]", (), (), True, "local", Timings(0.0, 1.0, 1.0)))


def test_run_times_the_first_streamed_token():
    delay = 0.05
    outcomes = run(TimedAssistant(delay), [Question("q", "?", True)])
    assert delay * 1000 <= outcomes[0].first_token_ms < 2 * delay * 1000
    assert metrics(outcomes)["first_token_ms_p50"] == outcomes[0].first_token_ms
