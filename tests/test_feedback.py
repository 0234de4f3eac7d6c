"""Readers' feedback: append-only JSONL in the index folder, safe under concurrent writers,
malformed lines skipped with file and line, and convertible into eval questions."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from culture_rag.errors import FeedbackError
from culture_rag.evaluate.scoring import read_questions
from culture_rag.serve.feedback import (
    CitedPassage,
    as_eval_questions,
    citations_from_answer,
    feedback_path,
    read_feedback,
    record_feedback,
)

QUOTE = "Government support for cultural diplomacy"


def cited(n: int = 1) -> list[CitedPassage]:
    return [CitedPassage(f"paper-{i}", f"chunk-{i}", f"{QUOTE} {i}", page=i, source=f"paper-{i}.pdf") for i in range(n)]


def test_a_verdict_is_stored_and_read_back(tmp_path):
    entry = record_feedback(
        tmp_path, question="  What strengths?  ", answer="Crafts [1].", kind="helpful",
        citations=cited(2), comment="spot on", user="alice", generation=3,
    )
    log = read_feedback(tmp_path)
    assert log.entries == (entry,) and log.skipped == ()
    assert entry.question == "What strengths?" and entry.user == "alice" and entry.generation == 3
    assert entry.citations[1] == CitedPassage("paper-1", "chunk-1", f"{QUOTE} 1", 1, "paper-1.pdf")
    assert json.loads(feedback_path(tmp_path).read_text())["time"].endswith("+00:00")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "great"}, "kind"),
        ({"question": "   "}, "question is empty"),
        ({"comment": "x" * 2001}, "comment: 2001 characters"),
        ({"citations": cited(51)}, "at most 50"),
    ],
)
def test_bad_feedback_is_refused_with_the_field(tmp_path, fields, words):
    with pytest.raises(FeedbackError, match=words):
        record_feedback(tmp_path, **{"question": "Q?", "answer": "A.", "kind": "helpful", **fields})
    assert not feedback_path(tmp_path).exists()


def _write_many(index_dir: str, writer: int, n: int) -> None:
    for i in range(n):
        record_feedback(
            index_dir, question=f"question {writer}-{i}?", answer=f"{writer}" * 15_000, kind="wrong_citation",
            citations=cited(5), comment=f"{i:04d}" * 400, user=f"user{writer}",
        )


def test_concurrent_writers_never_interleave_lines(tmp_path):
    # Lines of ~20 kB: far above a pipe's atomic size, so only the lock keeps them whole.
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_many, args=(str(tmp_path), w, 40)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    log = read_feedback(tmp_path)
    assert log.skipped == ()
    assert sorted(e.question for e in log.entries) == sorted(f"question {w}-{i}?" for w in range(4) for i in range(40))
    assert all(set(e.answer) == {e.user[-1]} for e in log.entries)


def test_malformed_lines_are_reported_with_their_line_and_skipped(tmp_path):
    record_feedback(tmp_path, question="first?", answer="A.", kind="helpful")
    path = feedback_path(tmp_path)
    with open(path, "a", encoding="utf-8") as out:
        out.write("not json at all\n")
        out.write(json.dumps({"time": "t", "question": "q?", "kind": "loved it"}) + "\n")
        out.write("\n")
    record_feedback(tmp_path, question="last?", answer="A.", kind="should_have_declined")
    with open(path, "a", encoding="utf-8") as out:
        out.write('{"time": "2026-12-01T10:00:00+00:00", "question": "cut sh')  # a crash mid-write
    log = read_feedback(tmp_path)
    assert [e.question for e in log.entries] == ["first?", "last?"]
    assert [p.split(": ")[0] for p in log.skipped] == [f"{path}:2", f"{path}:3", f"{path}:6"]
    assert "kind" in log.skipped[1]


def test_verdicts_become_questions_in_the_eval_format(tmp_path):
    record_feedback(tmp_path, question="What strengths does it list?", answer="Crafts [1].", kind="helpful", citations=cited(1))
    record_feedback(tmp_path, question="What was the GDP in 2023?", answer="It was 5 [1].", kind="should_have_declined", citations=cited(1))
    record_feedback(tmp_path, question="Who won the cup?", answer="The papers do not answer this.", kind="helpful")
    record_feedback(tmp_path, question="Which ports?", answer="Ports [1].", kind="wrong_citation", citations=cited(1), comment="wrong paper")
    record_feedback(tmp_path, question="which  PORTS?", answer="Ports [1].", kind="wrong_citation", comment="still wrong")
    lines = as_eval_questions(read_feedback(tmp_path).entries)
    target = tmp_path / "from-feedback.jsonl"
    target.write_text("".join(json.dumps(line) + "\n" for line in lines))
    questions = {q.question: q for q in read_questions(target)}
    assert len(questions) == 4 and len({q.id for q in questions.values()}) == 4
    helpful = questions["What strengths does it list?"]
    assert helpful.answerable and helpful.evidence == (f"{QUOTE} 0",) and helpful.sources == ("paper-0.pdf",)
    assert not questions["What was the GDP in 2023?"].answerable
    assert not questions["Who won the cup?"].answerable  # a refusal judged helpful
    assert questions["which  PORTS?"].answerable and questions["which  PORTS?"].evidence == ()
    assert next(line for line in lines if line["question"] == "which  PORTS?")["feedback"]["comment"] == "still wrong"


def test_citations_are_taken_from_an_api_answer():
    answer = {"citations": [{"n": 1, "paper_id": "p1", "chunk_id": "c1", "quote": QUOTE, "page": 4, "passage": "…"}]}
    assert citations_from_answer(answer, {"p1": "p1.pdf"}) == [CitedPassage("p1", "c1", QUOTE, 4, "p1.pdf")]
    with pytest.raises(FeedbackError, match=r"answer.citations\[1\]"):
        citations_from_answer({"citations": [{"quote": QUOTE}]})


def test_the_cli_lists_feedback_as_json_and_as_eval_lines(tmp_path):
    record_feedback(tmp_path, question="What was the GDP in 2023?", answer="5 [1].", kind="should_have_declined", user="bob")
    feedback_path(tmp_path).open("a").write("{broken\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "culture_rag.serve.cli", "feedback", "--index", str(tmp_path)]
    listed = subprocess.run([*base, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [(e["user"], e["kind"]) for e in json.loads(listed.stdout)] == [("bob", "should_have_declined")]
    assert f"{feedback_path(tmp_path)}:2: skipped" in listed.stderr
    as_eval = subprocess.run([*base, "--as-eval"], capture_output=True, text=True, env=env, timeout=120)
    lines = [json.loads(line) for line in as_eval.stdout.splitlines()]
    assert [(line["question"], line["answerable"]) for line in lines] == [("What was the GDP in 2023?", False)]
