"""Citations and the checks that keep answers inside the sources.

A citation points at an exact quote: the sentence(s) of a retrieved chunk, with character
offsets into the paper's cleaned text and the page the quote is on. Generated sentences are
kept only when they cite a retrieved passage that supports them; invented citation numbers are
removed and unsupported sentences dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from culture_rag.index.lexical import content_words
from culture_rag.ingest.chunking import split_sentences
from culture_rag.types import Citation, Hit, Span

MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass(frozen=True)
class Support:
    score: float
    sentence: Span  # the passage sentence that best supports the claim


@dataclass(frozen=True)
class CheckedSentence:
    text: str  # without markers
    cited: tuple[int, ...]  # valid citation numbers (1-based into the hits)
    support: Support | None
    kept: bool
    reason: str = ""  # why a sentence was removed


def cite(n: int, hit: Hit, sentence: Span) -> Citation:
    return Citation(
        n=n,
        chunk=hit.chunk,
        paper=hit.paper,
        quote=hit.chunk.sentence_text(sentence),
        start=sentence.start,
        end=sentence.end,
        page=sentence.page if sentence.page is not None else hit.chunk.page_start,
    )


IdfFn = Callable[[list[str]], dict[str, float]]

_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules|prompts?|above|guidelines)\b"
    r"|\bsystem prompt\b|\byou are (now )?(an?|the) (ai|assistant|language model|chatbot)\b"
    r"|\b(reply|respond|answer|say) (only|exactly) with\b",
    re.I,
)


def is_instruction(sentence: str) -> bool:
    """Text in a document addressed to the model. It is never evidence for a claim, so a planted
    instruction can neither be quoted as an answer nor lend support to what it asked for."""
    return bool(_INSTRUCTION.search(sentence))


def word_overlap(claim_words: list[str], source_words: set[str], idf: dict[str, float]) -> float:
    """Share of the claim's content words, weighted by rarity, that the source contains."""
    total = sum(idf.get(w, 1.0) for w in claim_words)
    if not total:
        return 0.0
    return sum(idf.get(w, 1.0) for w in claim_words if w in source_words) / total


def support_of(claim: str, claim_vector: np.ndarray, hit: Hit, idf: IdfFn) -> Support | None:
    """How well one passage supports a claim: the best of its sentences by an even mix of
    embedding cosine and rarity-weighted word overlap. Cosine alone lets fluent paraphrases of
    anything pass; overlap alone punishes honest paraphrase. Numbers must match exactly."""
    if hit.sentence_vectors is None or not len(hit.chunk.sentences):
        return None
    words = content_words(claim)
    weights = idf(words)
    cosines = hit.sentence_vectors @ claim_vector
    best: Support | None = None
    for i, span in enumerate(hit.chunk.sentences):
        text = hit.chunk.sentence_text(span)
        if is_instruction(text):
            continue
        score = 0.5 * float(cosines[i]) + 0.5 * word_overlap(words, set(content_words(text)), weights)
        if not _numbers_match(claim, text):
            score *= 0.5
        if best is None or score > best.score:
            best = Support(score, span)
    return best


def _numbers_match(claim: str, source: str) -> bool:
    numbers = set(re.findall(r"\d+(?:[.,]\d+)?", claim))
    return numbers <= set(re.findall(r"\d+(?:[.,]\d+)?", source))


def split_claims(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Sentences of a generated answer with the citation numbers each carries."""
    claims = []
    for span in split_sentences(text.strip()):
        sentence = text.strip()[span.start : span.end]
        numbers = tuple(int(n) for group in MARKER.findall(sentence) for n in re.split(r"[,;]", group))
        plain = MARKER.sub("", sentence).strip()
        if len(content_words(plain)) >= 2:  # a lone word ("HACKED.") states nothing to check
            claims.append((plain, numbers))
        elif numbers and claims:  # a marker left alone on a line belongs to the sentence before
            claims[-1] = (claims[-1][0], claims[-1][1] + numbers)
    return claims


def check_claims(
    claims: list[tuple[str, tuple[int, ...]]], vectors: np.ndarray, hits: list[Hit], threshold: float, idf: IdfFn
) -> list[CheckedSentence]:
    """Keep a claim when a retrieved passage supports it. A claim whose cited passage does not
    support it, but another retrieved passage does, is re-pointed there: a wrong number is the
    most common citation error, and the reader deserves the passage that holds the claim."""
    out = []
    for (text, numbers), vector in zip(claims, vectors):
        valid = tuple(dict.fromkeys(n for n in numbers if 1 <= n <= len(hits)))
        scored = {n: support_of(text, vector, hits[n - 1], idf) for n in range(1, len(hits) + 1)}
        ranked = sorted(((s.score, n) for n, s in scored.items() if s is not None), reverse=True)
        cited = max(((scored[n].score, n) for n in valid if scored[n] is not None), default=None)
        if cited is not None and cited[0] >= threshold:
            out.append(CheckedSentence(text, (cited[1],), scored[cited[1]], True))
        elif ranked and ranked[0][0] >= threshold:
            reason = "citation re-pointed to the supporting passage" if numbers else "citation added"
            out.append(CheckedSentence(text, (ranked[0][1],), scored[ranked[0][1]], True, reason))
        elif numbers and not valid:
            out.append(CheckedSentence(text, (), None, False, "cites a passage that was not retrieved"))
        elif not numbers:
            out.append(CheckedSentence(text, (), None, False, "cites no passage and none supports it"))
        else:
            out.append(CheckedSentence(text, valid, scored[valid[0]], False, "not supported by the cited passage"))
    return out
