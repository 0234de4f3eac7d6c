"""What the scorer knows of a candidate sentence: how close it is to the question in meaning
(its own vector, its passage's, the cross-encoder's reading of the pair), in words (BM25 over
the candidates, share of the question's rare words), where it stands (the heading over it, its
place in the passage and the paper, its role) and what kind of question asks. Each is a column;
the weights that combine them are fitted (model.py), not set here."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from culture_rag.index.lexical import content_words
from culture_rag.ingest import regions as roles
from culture_rag.ingest.chunking import is_abstract
from culture_rag.reading.candidates import Candidate
from culture_rag.types import Hit

IdfFn = Callable[[list[str]], dict[str, float]]

# A section's role by the words of its heading: what part of a paper's argument it holds.
SECTION_KINDS = {
    "intro": r"introduction|background|motivation|overview",
    "related": r"related work|prior work|previous work|literature",
    "method": r"method|approach|model|architecture|framework|proposed|system|algorithm|design|implementation",
    "data": r"data|corpus|corpora|annotation|collection|benchmark",
    "experiment": r"experiment|setup|setting|training|baseline|evaluation|metric",
    "result": r"result|analysis|finding|performance|comparison|ablation|error",
    "discussion": r"discussion|limitation|future|challenge|implication",
    "conclusion": r"conclusion|concluding|summary|closing",
}
_KIND_PATTERNS = {name: re.compile(rf"\b({words})", re.I) for name, words in SECTION_KINDS.items()}
_NUMBER_QUESTION = re.compile(r"\bhow (many|much|large|big|long|often)\b|\bpercent|\bnumber of\b|\bwhat (size|proportion|fraction|share)\b|\bby how\b", re.I)
_YES_NO = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I)
_WHO = re.compile(r"^\s*(who|whom|whose)\b|\bauthors?\b", re.I)
_DIGIT = re.compile(r"\d")

NAMES = (
    "dense", "dense_gap", "dense_rank", "bm25", "bm25_gap", "bm25_rank", "coverage",
    "passage_score", "passage_dense", "passage_rank", "heading_coverage", "ce", "ce_gap", "ce_rank",
    "position_in_passage", "position_in_paper", "words", "has_digit", "table", "quoted", "abstract", "front",
    *(f"section_{k}" for k in SECTION_KINDS),
    "number_question", "number_x_digit", "yes_no_question", "who_question", "who_x_front",
    "question_words",
)

K1, B = 1.2, 0.75


def _reciprocal_ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return 1.0 / ranks


def bm25(query_words: Sequence[str], docs: Sequence[Sequence[str]], idf: dict[str, float]) -> np.ndarray:
    """BM25 of each candidate as a document among the candidates, with the index's idf."""
    lengths = np.array([len(d) for d in docs], np.float64)
    average = float(lengths.mean()) if len(docs) else 1.0
    out = np.zeros(len(docs))
    for i, doc in enumerate(docs):
        counts = Counter(doc)
        norm = K1 * (1 - B + B * lengths[i] / (average or 1.0))
        # In the question's order, not a set's: a sum in another order differs in its last bits
        # from run to run (string hashing is salted per process), and fitting must be reproducible.
        out[i] = sum(idf.get(w, 0.0) * counts[w] * (K1 + 1) / (counts[w] + norm) for w in dict.fromkeys(query_words) if w in counts)
    return out


@dataclass(frozen=True)
class Closeness:
    """The question's closeness to each candidate before any model: cosine and BM25. Computed
    once a question, for the first-stage ranking (which candidates the cross-encoder reads) and
    for the features."""

    weights: dict[str, float]  # idf of the question's content words, in the question's order
    words: list[list[str]]  # each candidate's content words
    dense: np.ndarray
    lexical: np.ndarray


def closeness(question: str, query_vector: np.ndarray, cands: Sequence[Candidate], idf: IdfFn) -> Closeness:
    q_words = content_words(question)
    weights = idf(list(dict.fromkeys(q_words)))
    words = [content_words(c.text) for c in cands]
    dense = np.array([float(c.vector @ query_vector) for c in cands])
    return Closeness(weights, words, dense, bm25(q_words, words, weights))


def compare_columns(rows: np.ndarray, dense: np.ndarray, lexical: np.ndarray, ce: np.ndarray) -> None:
    """Fill, in place, the columns that compare each candidate with the others of its question:
    the gap to the best and the reciprocal rank of its cosine, BM25 (`lexical`, before the
    log1p of the bm25 column) and cross-encoder score. They change when candidates are removed."""
    col = {name: i for i, name in enumerate(NAMES)}
    rows[:, col["dense_gap"]] = dense - dense.max()
    rows[:, col["dense_rank"]] = _reciprocal_ranks(dense)
    rows[:, col["bm25_gap"]] = lexical / (lexical.max() or 1.0)
    rows[:, col["bm25_rank"]] = _reciprocal_ranks(lexical)
    rows[:, col["ce_gap"]] = ce - ce.max()
    rows[:, col["ce_rank"]] = _reciprocal_ranks(ce)


def question_features(question: str) -> dict[str, float]:
    return {
        "number_question": float(bool(_NUMBER_QUESTION.search(question))),
        "yes_no_question": float(bool(_YES_NO.search(question))),
        "who_question": float(bool(_WHO.search(question))),
        "question_words": math.log1p(len(question.split())),
    }


def features(
    question: str,
    close: Closeness,
    cands: list[Candidate],
    hits: list[Hit],
    ce_scores: np.ndarray | None = None,
    paper_sizes: dict[str, int] | None = None,
) -> np.ndarray:
    """One row per candidate, one column per name in NAMES. `ce_scores`: the cross-encoder's
    logits, NaN for candidates it did not read (they get the lowest it gave)."""
    n = len(cands)
    if n == 0:
        return np.zeros((0, len(NAMES)))
    weights, docs, dense, lexical = close.weights, close.words, close.dense, close.lexical
    total = sum(weights.values()) or 1.0
    if ce_scores is None:
        ce = np.zeros(n)
    else:
        ce = np.asarray(ce_scores, np.float64).copy()
        floor = np.nanmin(ce) - 1.0 if np.isfinite(ce).any() else 0.0
        ce[~np.isfinite(ce)] = floor
    passage_scores = np.array([hits[c.hit].score for c in cands])
    qf = question_features(question)
    rows = np.zeros((n, len(NAMES)))
    col = {name: i for i, name in enumerate(NAMES)}
    rows[:, col["dense"]] = dense
    rows[:, col["bm25"]] = np.log1p(lexical)
    rows[:, col["ce"]] = ce
    compare_columns(rows, dense, lexical, ce)
    rows[:, col["passage_rank"]] = 1.0 / (1.0 + np.array([c.hit for c in cands]))
    rows[:, col["passage_score"]] = passage_scores / (passage_scores.max() or 1.0)
    rows[:, col["passage_dense"]] = [hits[c.hit].dense_score or 0.0 for c in cands]
    for i, c in enumerate(cands):
        hit = hits[c.hit]
        chunk = hit.chunk
        words = set(docs[i])
        heading = set(content_words(" ".join((*chunk.heading_path, chunk.context))))
        heading_text = " ".join(chunk.heading_path) or chunk.context
        span_role = chunk.sentences[c.sentence].role
        digit = float(bool(_DIGIT.search(c.text)))
        front = float(chunk.role == roles.FRONT)
        rows[i, col["coverage"]] = sum(v for w, v in weights.items() if w in words) / total
        rows[i, col["heading_coverage"]] = sum(v for w, v in weights.items() if w in heading) / total
        rows[i, col["position_in_passage"]] = c.sentence / max(1, len(chunk.sentences) - 1)
        size = (paper_sizes or {}).get(chunk.paper_id)
        rows[i, col["position_in_paper"]] = min(1.0, chunk.start / size) if size else 0.5
        rows[i, col["words"]] = math.log1p(len(c.text.split()))
        rows[i, col["has_digit"]] = digit
        rows[i, col["table"]] = float(span_role == roles.TABLE or "\t" in chunk.sentence_text(chunk.sentences[c.sentence]))
        rows[i, col["quoted"]] = float(span_role == roles.QUOTED)
        rows[i, col["abstract"]] = float(is_abstract(chunk))
        rows[i, col["front"]] = front
        for kind, pattern in _KIND_PATTERNS.items():
            rows[i, col[f"section_{kind}"]] = float(bool(pattern.search(heading_text)))
        rows[i, col["number_x_digit"]] = qf["number_question"] * digit
        rows[i, col["who_x_front"]] = qf["who_question"] * front
    for name in ("number_question", "yes_no_question", "who_question", "question_words"):
        rows[:, col[name]] = qf[name]
    return rows
