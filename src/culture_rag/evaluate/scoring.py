"""Scoring question sets in the format of shared/eval/FORMAT.md."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from culture_rag.errors import CultureRagError


def normalize(text: str) -> str:
    """FORMAT.md's normalization for every substring match."""
    text = text.replace("\\$", "$").replace("\\", "")
    text = re.sub(r"[*_`]", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def contains_evidence(chunk_text: str, evidence: list[str]) -> bool:
    haystack = normalize(chunk_text)
    return any(normalize(e) in haystack for e in evidence if e.strip())


RECALL_KS = (1, 3, 5, 10)
SOURCE_KS = (1, 3, 5)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answerable: bool
    evidence: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    answer_keywords: tuple[str, ...] = ()
    reference_answer: str | None = None
    key_points: tuple[tuple[str, ...], ...] = ()  # each point: alternatives, any one of which makes it


def _key_points(raw: object) -> tuple[tuple[str, ...], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(point, list) and point and all(isinstance(alt, str) and alt.strip() for alt in point) for point in raw
    ):
        raise TypeError("key_points must be a list of non-empty lists of strings")
    return tuple(tuple(point) for point in raw)


def read_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            questions.append(
                Question(
                    id=str(raw["id"]),
                    question=raw["question"],
                    answerable=bool(raw["answerable"]),
                    evidence=tuple(raw.get("evidence") or ()),
                    sources=tuple(raw.get("sources") or ()),
                    answer_keywords=tuple(raw.get("answer_keywords") or ()),
                    reference_answer=raw.get("reference_answer"),
                    key_points=_key_points(raw.get("key_points")),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CultureRagError(f"{path}:{number}: not a question in the FORMAT.md layout ({exc})") from None
    return questions


@dataclass(frozen=True)
class Outcome:
    question: Question
    hit_texts: tuple[str, ...]
    hit_sources: tuple[str, ...]
    answer_text: str
    answered: bool
    cited_texts: tuple[str, ...]
    cited_sources: tuple[str, ...]
    removed: int
    fell_back: bool  # a generative answer replaced by the extractive one: nothing generated survived
    search_ms: float
    answer_ms: float
    first_token_ms: float | None = None  # from asking to the first streamed text; None when declined
    cited_quotes: tuple[str, ...] = ()  # the exact text each citation quotes

    @classmethod
    def of(cls, question: Question, answer, hits, search_ms: float, answer_ms: float, first_token_ms: float | None = None) -> Outcome:
        """The outcome of one asked question: `hits` are the passages its retrieval is judged by."""
        return cls(
            question=question,
            hit_texts=tuple(h.chunk.text for h in hits),
            hit_sources=tuple(h.paper.source for h in hits),
            answer_text=answer.text,
            answered=answer.answered,
            cited_texts=tuple(c.chunk.text for c in answer.citations),
            cited_sources=tuple(c.paper.source for c in answer.citations),
            removed=len(answer.removed),
            fell_back=answer.mode != "extractive" and "extractive answer" in answer.notice,
            search_ms=search_ms,
            answer_ms=answer_ms,
            first_token_ms=first_token_ms,
            cited_quotes=tuple(c.quote for c in answer.citations),
        )


def run(assistant, questions: list[Question], mode: str | None = None, k: int = 10) -> list[Outcome]:
    outcomes = []
    for q in questions:
        start = time.perf_counter()
        hits = assistant.search(q.question, k=k)
        search_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        answer, first_token_ms = None, None
        for event in assistant.stream(q.question, mode=mode):
            if event.kind == "token" and first_token_ms is None:
                first_token_ms = (time.perf_counter() - start) * 1000
            answer = event.answer or answer
        outcomes.append(Outcome.of(q, answer, hits, search_ms, answer.timings.total_ms, first_token_ms))
    return outcomes


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _first_evidence_rank(o: Outcome) -> int | None:
    return next((i for i, t in enumerate(o.hit_texts, start=1) if contains_evidence(t, list(o.question.evidence))), None)


def metrics(outcomes: list[Outcome], similarity=None) -> dict[str, float | int | None]:
    """Every metric of FORMAT.md. `similarity(a_list, b_list) -> cosines` scores answers
    against reference answers with the index's embedding model."""
    with_evidence = [o for o in outcomes if o.question.answerable and o.question.evidence]
    ranks = [_first_evidence_rank(o) for o in with_evidence]
    out: dict[str, float | int | None] = {"questions": len(outcomes)}
    for k in RECALL_KS:
        out[f"recall@{k}"] = _share([r is not None and r <= k for r in ranks])
    out["mrr"] = sum(1 / r for r in ranks if r) / len(ranks) if ranks else None
    with_sources = [o for o in outcomes if o.question.sources]
    for k in SOURCE_KS:
        out[f"source_hit@{k}"] = _share([bool(set(o.hit_sources[:k]) & set(o.question.sources)) for o in with_sources])
    keyworded = [o for o in outcomes if o.question.answerable and o.question.answer_keywords]
    out["keyword_hit"] = _share(
        [all(normalize(kw) in normalize(o.answer_text) for kw in o.question.answer_keywords) for o in keyworded]
    )
    out["citation_precision"] = _share([ok for o in outcomes for ok in _citations_correct(o)])
    out["evidence_in_quote"] = _share([quote_in_evidence(o) for o in with_evidence])
    out["abstention"] = _share([not o.answered for o in outcomes if not o.question.answerable])
    out["false_abstention"] = _share([not o.answered for o in outcomes if o.question.answerable])
    referenced = [o for o in outcomes if o.question.reference_answer]
    if referenced and similarity is not None:
        cosines = similarity([_plain(o.answer_text) for o in referenced], [o.question.reference_answer for o in referenced])
        out["answer_similarity"] = float(np.mean(cosines))
    else:
        out["answer_similarity"] = None
    out.update(key_point_metrics(outcomes))
    out["removed_sentences"] = sum(o.removed for o in outcomes)
    out["fallbacks"] = sum(o.fell_back for o in outcomes)
    for name in ("search_ms", "answer_ms", "first_token_ms"):
        values = [getattr(o, name) for o in outcomes if getattr(o, name) is not None]
        out[f"{name}_p50"] = float(np.percentile(values, 50)) if values else None
        out[f"{name}_p95"] = float(np.percentile(values, 95)) if values else None
    return out


def points_made(o: Outcome) -> list[bool]:
    """For each key point, whether the answer makes it; a declined answer makes none."""
    answer = normalize(o.answer_text) if o.answered else ""
    return [o.answered and any(normalize(alt) in answer for alt in point) for point in o.question.key_points]


def key_point_metrics(outcomes: list[Outcome]) -> dict[str, float | None]:
    """FORMAT.md's key-point metrics. source_precision counts the citations of questions that
    name `sources`, and those of unanswerable questions, which have no source to cite."""
    pointed = [points_made(o) for o in outcomes if o.question.answerable and o.question.key_points]
    judged = [o for o in outcomes if o.question.sources or not o.question.answerable]
    words = [len(_plain(o.answer_text).split()) for o in outcomes if o.question.answerable]
    return {
        "key_point_coverage": float(np.mean([sum(p) / len(p) for p in pointed])) if pointed else None,
        "full_coverage": _share([all(p) for p in pointed]),
        "source_precision": _share([s in o.question.sources for o in judged for s in o.cited_sources]),
        "answer_words_p50": float(np.median(words)) if words else None,
    }


def quote_in_evidence(o: Outcome) -> bool:
    """A cited quote lies inside a gold evidence string, or contains one (a declined answer
    quotes nothing). Finer than citation precision, which credits any quote of the right chunk."""
    gold = [normalize(e) for e in o.question.evidence if e.strip()]
    quotes = [normalize(q) for q in o.cited_quotes if q.strip()] if o.answered else []
    return any(q in g or g in q for q in quotes for g in gold)


def _citations_correct(o: Outcome) -> list[bool]:
    return citations_right(o.question, o.cited_texts, o.cited_sources) or []


def citations_right(q: Question, texts: Sequence[str], sources: Sequence[str]) -> list[bool] | None:
    """Per citation (its chunk's text, its paper's file), whether it is right: its chunk holds
    evidence, or, with no evidence given, it comes from a source file. Citations given for an
    unanswerable question are wrong by definition; None when there is nothing to judge by."""
    if not q.answerable:
        return [False] * len(texts)
    if q.evidence:
        return [contains_evidence(t, list(q.evidence)) for t in texts]
    if q.sources:
        return [s in q.sources for s in sources]
    return None


def _plain(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text)
