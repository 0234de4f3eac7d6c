"""Readers' verdicts on answers, kept next to the index in feedback.jsonl (append-only, one JSON
object a line) so that they can become new evaluation questions (`culture-rag feedback --as-eval`)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from culture_rag.errors import FeedbackError

log = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback.jsonl"
KINDS = ("helpful", "wrong_citation", "should_have_declined")
MAX_COMMENT_CHARS = 2000
MAX_TEXT_CHARS = 20_000  # a question or an answer
MAX_CITATIONS = 50


@dataclass(frozen=True)
class CitedPassage:
    paper_id: str
    chunk_id: str
    quote: str
    page: int | None = None
    source: str = ""  # the paper's file name, as eval questions name their sources


@dataclass(frozen=True)
class Feedback:
    time: str  # ISO 8601, UTC
    user: str | None  # the logged-in user; None on a server without --auth
    question: str
    answer: str
    citations: tuple[CitedPassage, ...]
    kind: str
    comment: str
    generation: int | None  # the index generation that gave the answer


@dataclass(frozen=True)
class FeedbackLog:
    entries: tuple[Feedback, ...]
    skipped: tuple[str, ...]  # "FILE:LINE: why", for each line that could not be read


def feedback_path(index_dir: str | Path) -> Path:
    return Path(index_dir) / FEEDBACK_FILE


def record_feedback(
    index_dir: str | Path,
    *,
    question: str,
    answer: str,
    kind: str,
    citations: Iterable[CitedPassage] = (),
    comment: str = "",
    user: str | None = None,
    generation: int | None = None,
) -> Feedback:
    """Append one verdict to the index folder's feedback.jsonl and return it."""
    entry = Feedback(
        time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        user=user or None,
        question=_text("question", question, MAX_TEXT_CHARS, required=True),
        answer=_text("answer", answer, MAX_TEXT_CHARS),
        citations=tuple(citations),
        kind=_kind(kind),
        comment=_text("comment", comment, MAX_COMMENT_CHARS),
        generation=generation,
    )
    if len(entry.citations) > MAX_CITATIONS:
        raise FeedbackError(f"citations: {len(entry.citations)} given; at most {MAX_CITATIONS}")
    line = (json.dumps(asdict(entry), ensure_ascii=False) + "\n").encode("utf-8")
    _append(feedback_path(index_dir), line)
    return entry


def _append(path: Path, line: bytes) -> None:
    """One write of a whole line under an exclusive lock: appends from several threads or
    processes (two servers on one index, the CLI) never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise FeedbackError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def _text(name: str, value, limit: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise FeedbackError(f"{name}: expected text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise FeedbackError(f"{name} is empty; feedback is about the answer to a question")
    if len(value) > limit:
        raise FeedbackError(f"{name}: {len(value)} characters; at most {limit}")
    return value


def read_feedback(index_dir: str | Path) -> FeedbackLog:
    """Every readable verdict, oldest first; malformed lines are logged with file and line
    number and skipped (a write cut short by a crash leaves one)."""
    path = feedback_path(index_dir)
    if not path.exists():
        return FeedbackLog((), ())
    entries, skipped = [], []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(_parse(json.loads(line)))
            except (json.JSONDecodeError, FeedbackError, KeyError, TypeError, ValueError) as exc:
                problem = f"{path}:{number}: skipped, not a feedback record ({exc})"
                log.warning("%s", problem)
                skipped.append(problem)
    return FeedbackLog(tuple(entries), tuple(skipped))


def _parse(raw: dict) -> Feedback:
    if not isinstance(raw, dict):
        raise TypeError("expected a JSON object")
    citations = raw.get("citations") or []
    if not isinstance(citations, list):
        raise TypeError("citations: expected a list")
    generation = raw.get("generation")
    if generation is not None and not isinstance(generation, int):
        raise TypeError("generation: expected a whole number")
    return Feedback(
        time=str(raw["time"]),
        user=raw.get("user") if isinstance(raw.get("user"), str) else None,
        question=_text("question", raw["question"], MAX_TEXT_CHARS, required=True),
        answer=_text("answer", raw.get("answer", ""), MAX_TEXT_CHARS),
        citations=tuple(_citation(c) for c in citations),
        kind=_kind(raw["kind"]),
        comment=_text("comment", raw.get("comment", ""), MAX_COMMENT_CHARS),
        generation=generation,
    )


def _citation(raw: dict) -> CitedPassage:
    if not isinstance(raw, dict):
        raise TypeError("a citation is an object")
    page = raw.get("page")
    return CitedPassage(
        paper_id=str(raw["paper_id"]),
        chunk_id=str(raw["chunk_id"]),
        quote=str(raw.get("quote", "")),
        page=page if isinstance(page, int) else None,
        source=str(raw.get("source") or ""),
    )


def as_eval_questions(entries: Iterable[Feedback]) -> list[dict]:
    """Verdicts as question lines of eval/FORMAT.md, the latest verdict per question and kind:
    "should have declined" becomes an unanswerable question; "helpful" an answerable one whose
    evidence is the quotes (or an unanswerable one when the helpful answer was a refusal);
    "wrong citation" an answerable one with no evidence, for a person to complete. The verdict
    itself rides along under `feedback` (evaluators ignore unknown fields)."""
    latest: dict[tuple[str, str], Feedback] = {}
    for entry in entries:
        latest[(" ".join(entry.question.lower().split()), entry.kind)] = entry
    questions = []
    for (normalized, kind), entry in latest.items():
        line: dict = {"id": "fb-" + hashlib.sha256(f"{kind}\n{normalized}".encode()).hexdigest()[:10], "question": entry.question}
        if kind == "should_have_declined" or (kind == "helpful" and not entry.citations):
            line["answerable"] = False
        else:
            line["answerable"] = True
            if kind == "helpful":
                line["evidence"] = sorted({c.quote for c in entry.citations if c.quote})
                sources = sorted({c.source for c in entry.citations if c.source})
                if sources:
                    line["sources"] = sources
        line["feedback"] = {"kind": kind, "comment": entry.comment, "time": entry.time, "user": entry.user}
        questions.append(line)
    return questions


def citations_from_answer(answer: dict, sources: dict[str, str] | None = None) -> list[CitedPassage]:
    """The cited passages of an answer as the API returns it (serialize.answer_json);
    `sources` maps paper ids to file names."""
    cited = answer.get("citations") or []
    if not isinstance(cited, list):
        raise FeedbackError("answer.citations: expected a list")
    out = []
    for number, c in enumerate(cited, start=1):
        if not isinstance(c, dict) or not isinstance(c.get("paper_id"), str) or not isinstance(c.get("chunk_id"), str):
            raise FeedbackError(f"answer.citations[{number}]: expected an object with paper_id and chunk_id")
        page = c.get("page")
        out.append(
            CitedPassage(
                paper_id=c["paper_id"],
                chunk_id=c["chunk_id"],
                quote=str(c.get("quote") or ""),
                page=page if isinstance(page, int) else None,
                source=(sources or {}).get(c["paper_id"], ""),
            )
        )
    return out
