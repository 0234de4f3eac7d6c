"""Citations and the checks that keep answers inside the sources.

A citation points at an exact quote: the sentence(s) of a retrieved chunk, with character
offsets into the paper's cleaned text and the page the quote is on. Generated sentences are
kept only when they cite a retrieved passage that supports them; invented citation numbers are
removed and unsupported sentences dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .chunking import Chunk, Span, split_sentences
from .index import PaperInfo
from .lexical import content_words
from .retrieval import Hit

MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass(frozen=True)
class Citation:
    n: int
    chunk: Chunk
    paper: PaperInfo
    quote: str  # exact text of the cited sentence(s)
    start: int  # offsets of the quote in the paper's cleaned text
    end: int
    page: int | None = None

    @property
    def location(self) -> str:
        if self.page is not None:
            return f"p. {self.page}"
        return self.chunk.location


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


def word_overlap(claim_words: list[str], source_words: set[str]) -> float:
    """Share of the claim's content words that the source contains."""
    if not claim_words:
        return 0.0
    return sum(1 for w in claim_words if w in source_words) / len(claim_words)


def support_of(claim: str, claim_vector: np.ndarray, hit: Hit) -> Support | None:
    """How well one passage supports a claim: the best of its sentences by an even mix of
    embedding cosine and word overlap. Cosine alone lets fluent paraphrases of anything pass;
    overlap alone punishes honest paraphrase. Numbers must match exactly."""
    if hit.sentence_vectors is None or not len(hit.chunk.sentences):
        return None
    words = content_words(claim)
    cosines = hit.sentence_vectors @ claim_vector
    best: Support | None = None
    for i, span in enumerate(hit.chunk.sentences):
        text = hit.chunk.sentence_text(span)
        score = 0.5 * float(cosines[i]) + 0.5 * word_overlap(words, set(content_words(text)))
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
        if plain and re.search(r"\w", plain):
            claims.append((plain, numbers))
        elif numbers and claims:  # a marker left alone on a line belongs to the sentence before
            claims[-1] = (claims[-1][0], claims[-1][1] + numbers)
    return claims


def check_claims(
    claims: list[tuple[str, tuple[int, ...]]], vectors: np.ndarray, hits: list[Hit], threshold: float
) -> list[CheckedSentence]:
    out = []
    for (text, numbers), vector in zip(claims, vectors):
        valid = tuple(dict.fromkeys(n for n in numbers if 1 <= n <= len(hits)))
        if not valid:
            reason = "cites no retrieved passage" if not numbers else "cites a passage that was not retrieved"
            out.append(CheckedSentence(text, (), None, False, reason))
            continue
        supports = [(n, support_of(text, vector, hits[n - 1])) for n in valid]
        n, best = max(supports, key=lambda pair: pair[1].score if pair[1] else -1.0)
        if best is None or best.score < threshold:
            out.append(CheckedSentence(text, valid, best, False, "not supported by the cited passage"))
        else:
            out.append(CheckedSentence(text, (n,), best, True))
    return out
