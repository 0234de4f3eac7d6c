"""The fitted extractive answerer: score every candidate sentence with the fitted model, decline
when the best ones do not look like an answer, else quote the best and those nearly as likely."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from culture_rag.answer.citations import cite
from culture_rag.answer.compose import Draft
from culture_rag.answer.prompts import DECLINED
from culture_rag.reading.candidates import Candidate, candidates
from culture_rag.reading.features import NAMES, Closeness, IdfFn, closeness, features
from culture_rag.reading.model import AnswerModel
from culture_rag.types import Hit

BASELINE_SENTENCES = 5  # as the baseline: the top 5 sentences
# Facts of the question fixed when it is read, whatever the sentence model: whether the
# hand-written refusal checks let it through, and how much of its weight (idf) no candidate holds
# at all, in share and in its rarest word ("How many GPUs ... on ImageNet?" where no passage says
# ImageNet): a question about a detail the papers never mention.
QUESTION_NAMES = ("rules_answered", "missing_share", "missing_max")
ANSWERED_BY_DEFAULT = (1.0, 0.0, 0.0)
ANSWERABLE_NAMES = ("top_logit", "second_logit", "top3_mean_logit", "top_ce", "top_dense", "top_coverage", "top_bm25", "candidates", *QUESTION_NAMES)


@dataclass(frozen=True)
class Reading:
    """The candidates of one question with their features and probabilities, best first."""

    cands: tuple[Candidate, ...]
    x: np.ndarray  # features, one row per candidate
    logits: np.ndarray
    answerable_x: np.ndarray  # the question's row for the answerable model
    first_stage: np.ndarray  # candidate indices by hybrid rank (cosine and BM25 fused), no model
    question_x: np.ndarray = field(default_factory=lambda: np.array(ANSWERED_BY_DEFAULT))  # QUESTION_NAMES


def first_stage(close: Closeness) -> np.ndarray:
    """Candidates by reciprocal rank fusion of their cosine and BM25: which the cross-encoder reads."""
    n = len(close.dense)
    fused = np.zeros(n)
    for scores in (close.dense, close.lexical):
        order = np.argsort(-scores, kind="stable")
        fused[order] += 1.0 / (60 + np.arange(1, n + 1))
    return np.argsort(-fused, kind="stable")


def missing(close: Closeness) -> tuple[float, float]:
    """The share of the question's idf weight in words no candidate holds, and the largest such
    word's weight as a share of the question's largest."""
    held = set().union(*map(set, close.words)) if close.words else set()
    absent = [v for w, v in close.weights.items() if w not in held]
    total, top = sum(close.weights.values()), max(close.weights.values(), default=0.0)
    return (sum(absent) / total if total else 0.0, max(absent, default=0.0) / top if top else 0.0)


def answerable_row(x: np.ndarray, logits: np.ndarray, question_x: np.ndarray | None = None) -> np.ndarray:
    """The question's row for the answerable model: how good its best candidates look, then the
    facts of the question (QUESTION_NAMES)."""
    col = {name: i for i, name in enumerate(NAMES)}
    facts = [float(v) for v in (ANSWERED_BY_DEFAULT if question_x is None else question_x)]
    if len(logits) == 0:
        return np.array([-10.0, -10.0, -10.0, -10.0, 0.0, 0.0, 0.0, 0.0, *facts])
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
        *facts,
    ])


class FittedAnswerer:
    def __init__(self, model: AnswerModel, reranker=None) -> None:
        self.model = model
        self.reranker = reranker  # rerank.Reranker or None (the model then sees no cross-encoder score)

    def read(
        self, question: str, query_vector: np.ndarray, hits: list[Hit], idf: IdfFn,
        paper_sizes: dict[str, int] | None = None, rerank: bool = True, rules_answered: bool = True,
    ) -> Reading:
        cands = candidates(hits)
        close = closeness(question, query_vector, cands, idf)
        order = first_stage(close)
        ce = None
        if cands and rerank and self.reranker is not None:
            top = order[: self.model.rerank_top]
            ce = np.full(len(cands), np.nan)
            ce[top] = self.reranker.score(question, [cands[i].text for i in top])
        x = features(question, close, cands, hits, ce, paper_sizes)
        logits = self.model.sentence.logit(x) if len(cands) else np.zeros(0)
        question_x = np.array([float(rules_answered), *missing(close)])
        return Reading(tuple(cands), x, logits, answerable_row(x, logits, question_x), order, question_x)

    def p_answerable(self, reading: Reading) -> float:
        return float(self.model.answerable.probability(reading.answerable_x[None, :])[0])

    def choose(self, reading: Reading) -> list[int]:
        """The best candidate, then up to max_sentences - 1 more that are nearly as likely and
        say something the chosen ones do not."""
        m = self.model
        if not len(reading.logits):
            return []
        p = 1.0 / (1.0 + np.exp(-reading.logits))
        order = np.argsort(-p, kind="stable")
        chosen = [int(order[0])]
        for i in order[1:]:
            if len(chosen) >= m.max_sentences or p[i] < max(m.keep_min, m.keep_ratio * p[order[0]]):
                break
            if any(_repeats(reading.cands[i], reading.cands[j], m.redundant_cosine) for j in chosen):
                continue
            chosen.append(int(i))
        return chosen

    def answer(self, reading: Reading, hits: list[Hit]) -> Draft:
        if not reading.cands or self.p_answerable(reading) < self.model.decline_below:
            return Draft(DECLINED, (), answered=False)
        return _render(reading, self.choose(reading), hits)

    @staticmethod
    def baseline(reading: Reading, hits: list[Hit], n: int = BASELINE_SENTENCES) -> Draft:
        """The rule-free yardstick: the top sentences of hybrid sentence retrieval, never declining."""
        if not reading.cands:
            return Draft(DECLINED, (), answered=False)
        return _render(reading, [int(i) for i in reading.first_stage[:n]], hits)


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
