"""The fitted extractive answerer: score every candidate sentence with the fitted model, decline
when the best ones do not look like an answer, else quote the best and those nearly as likely."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from culture_rag.answer.citations import cite
from culture_rag.answer.compose import Draft
from culture_rag.answer.prompts import DECLINED
from culture_rag.reading.candidates import Candidate, candidates
from culture_rag.reading.features import NAMES, Closeness, IdfFn, closeness, features
from culture_rag.reading.keep import keep_rows
from culture_rag.reading.model import AnswerModel
from culture_rag.types import Hit

BASELINE_SENTENCES = 5  # as the baseline: the top 5 sentences
ANSWERABLE_NAMES = ("top_logit", "second_logit", "top3_mean_logit", "top_ce", "top_dense", "top_coverage", "top_bm25", "candidates")


@dataclass(frozen=True)
class Reading:
    """The candidates of one question with their features and probabilities, best first."""

    cands: tuple[Candidate, ...]
    x: np.ndarray  # features, one row per candidate
    logits: np.ndarray
    answerable_x: np.ndarray  # the question's row for the answerable model
    first_stage: np.ndarray  # candidate indices by hybrid rank (cosine and BM25 fused), no model


def first_stage(close: Closeness) -> np.ndarray:
    """Candidates by reciprocal rank fusion of their cosine and BM25: which the cross-encoder reads."""
    n = len(close.dense)
    fused = np.zeros(n)
    for scores in (close.dense, close.lexical):
        order = np.argsort(-scores, kind="stable")
        fused[order] += 1.0 / (60 + np.arange(1, n + 1))
    return np.argsort(-fused, kind="stable")


def answerable_row(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The question's row for the answerable model: how good its best candidates look.

    The hand-written refusal checks were a feature here until session 14: without them the
    validation AUC of P(answerable) is 0.871 against 0.874, with the same abstention at the same
    false abstention (bench/README.md), so the fitted path no longer runs the rules at all."""
    col = {name: i for i, name in enumerate(NAMES)}
    if len(logits) == 0:
        return np.array([-10.0, -10.0, -10.0, -10.0, 0.0, 0.0, 0.0, 0.0])
    order = np.argsort(-logits)
    top = x[order[0]]
    return np.array([
        logits[order[0]],
        logits[order[1]] if len(order) > 1 else logits[order[0]] - 5.0,
        float(np.mean(logits[order[:3]])),
        float(x[:, col["ce"]].max()),
        float(x[:, col["dense"]].max()),
        float(top[col["coverage"]]),
        float(x[:, col["bm25"]].max()),
        float(np.log1p(len(logits))),
    ])


class FittedAnswerer:
    def __init__(self, model: AnswerModel, reranker=None) -> None:
        self.model = model
        self.reranker = reranker  # rerank.Reranker or None (the model then sees no cross-encoder score)

    def read(
        self, question: str, query_vector: np.ndarray, hits: list[Hit], idf: IdfFn,
        paper_sizes: dict[str, int] | None = None, rerank: bool = True,
    ) -> Reading:
        cands = candidates(hits)
        close = closeness(question, query_vector, cands, idf)
        order = first_stage(close)
        ce = None
        if cands and rerank and self.reranker is not None:
            top = order[: self.model.rerank_top]
            ce = np.full(len(cands), np.nan)
            ce[top] = self.reranker.score(question, [cross_encoder_text(cands[i], hits) for i in top])
        x = features(question, close, cands, hits, ce, paper_sizes)
        logits = self.model.sentence.logit(x) if len(cands) else np.zeros(0)
        return Reading(tuple(cands), x, logits, answerable_row(x, logits), order)

    def p_answerable(self, reading: Reading) -> float:
        return float(self.model.answerable.probability(reading.answerable_x[None, :])[0])

    def choose(self, reading: Reading) -> list[int]:
        """The best candidate, then up to max_sentences - 1 of the next ones that the keep model
        deems evidence too (keep.py) and that say something the chosen ones do not."""
        m = self.model
        if not len(reading.logits):
            return []
        chosen = [int(np.argmax(reading.logits))]
        idx, rows = keep_rows(reading.x, reading.logits, reading.cands)
        for i, p in zip(idx, m.keep.probability(rows) if idx else ()):
            if len(chosen) >= m.max_sentences:
                break
            if p >= m.keep_above and not any(_repeats(reading.cands[i], reading.cands[j], m.redundant_cosine) for j in chosen):
                chosen.append(i)
        return chosen

    def answers(self, reading: Reading) -> bool:
        """Whether the best candidates look like an answer (P(answerable) at the fitted threshold)."""
        return bool(reading.cands) and self.p_answerable(reading) >= self.model.decline_below

    def answer(self, reading: Reading, hits: list[Hit]) -> Draft:
        if not self.answers(reading):
            return Draft(DECLINED, (), answered=False)
        return _render(reading, self.choose(reading), hits)

    @staticmethod
    def ranked(reading: Reading) -> list[Candidate]:
        """The candidates best first: what a generative model is shown the start of."""
        return [reading.cands[i] for i in np.argsort(-reading.logits, kind="stable")]

    @staticmethod
    def baseline(reading: Reading, hits: list[Hit], n: int = BASELINE_SENTENCES) -> Draft:
        """The rule-free yardstick: the top sentences of hybrid sentence retrieval, never declining."""
        if not reading.cands:
            return Draft(DECLINED, (), answered=False)
        return _render(reading, [int(i) for i in reading.first_stage[:n]], hits)


def cross_encoder_text(c: Candidate, hits: list[Hit]) -> str:
    """What the cross-encoder reads of a candidate: the sentence under its section's heading, as a
    reader sees it ("Training data: We use two corpora of ..."). The heading tells what the
    sentence is about when its own words do not; it was worth +0.02 of the validation objective
    and +0.03 of key points (bench/README.md, session 11)."""
    path = hits[c.hit].chunk.heading_path
    return f"{path[-1]}: {c.text}" if path else c.text


def _repeats(a: Candidate, b: Candidate, cosine: float) -> bool:
    """`a` says again what `b` says: close in meaning, or quoting some of the same text (a
    sentence read with the one before it, which is itself a candidate)."""
    overlap = a.paper_id == b.paper_id and a.span.start < b.span.end and b.span.start < a.span.end
    return overlap or float(a.vector @ b.vector) >= cosine


def _render(reading: Reading, chosen: list[int], hits: list[Hit]) -> Draft:
    """The chosen sentences, each cited, in the order given: the likeliest answer first."""
    citations, parts = [], []
    for n, i in enumerate(chosen, start=1):
        c = reading.cands[i]
        citations.append(cite(n, hits[c.hit], c.span))
        parts.append(f"{c.text} [{n}]")
    return Draft(" ".join(parts), tuple(citations), answered=True)
