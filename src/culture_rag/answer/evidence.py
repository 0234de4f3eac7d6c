"""Evidence for an answer: the sentences a careful reader would quote.

They come from the retrieved passages and, for questions about a paper's structure (its
conclusion, its method, the subsections under a heading, its front matter), from the paper's
own sections, which retrieval by similarity alone ranks poorly: "What does the paper conclude?"
is not similar to the conclusion's sentences, but the conclusion is where the answer is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from culture_rag.answer.citations import is_instruction
from culture_rag.answer.headings import captions, match_headings, section_headings
from culture_rag.answer.query import QueryPlan
from culture_rag.answer.retrieval import paper_rows
from culture_rag.index.lexical import KeywordIndex, content_words, stem_in
from culture_rag.ingest import regions as roles
from culture_rag.ingest.chunking import is_abstract, table_row_text
from culture_rag.types import Chunk, Hit, Span

# Roles (chunking.Span.role) whose text is never an answer: the reader wants the paper's
# statements, not its headings, captions, bibliography or page furniture.
NEVER_QUOTED = frozenset({roles.HEADING, roles.CAPTION, roles.REFERENCE, roles.BOILERPLATE, roles.FIGURE})
# Text a paper reprints or shows inside a figure is not its own finding: it may be quoted,
# but never ahead of what the paper itself says.
NOT_OWN = frozenset({roles.QUOTED})
NOT_OWN_FACTOR = 0.6

HEADING_SHARE = 0.35  # of the question's topic weight a heading must share to be where it points

# Words that frame a question rather than say what it is about: evidence need not contain them.
FRAMING_WORDS = (
    "paper papers study studies article articles author authors work works research say says said mention "
    "mentioned propose proposes proposed describe described discuss discussed according main key list "
    "summarize summarise summary explain explained conclude concludes conclusion findings find found "
    "contribution contributions method approach do does did think give given show shows shown present "
    "presented report reported use used using mean meant build built make made reach reached keep kept "
    "solve solved help helps score scored compare compared achieve achieved kind kinds type types way ways "
    "much many often well call called named termed known respect regard regarding besides apart except "
    "particular particularly specific specifically go goes went gone get gets got take takes took "
    "what which who whom whose where when why how is are was were be been being did can could would should "
    "will shall may might must has have had draw draws drew drawn "
    # "what role does X play?", "what is the purpose of X?": what X does, in whatever words
    "role roles play plays played purpose purposes significance importance "
    # "what recommendations are made?": papers state them as strategies, measures, paths
    "recommend recommends recommended recommendation recommendations suggest suggests suggested "
    "suggestion suggestions proposal proposals "
    # "how does X influence Y?": the papers say what X does to Y ("leads to more accurate results")
    "affect affects affected influence influences influenced impact impacts impacted framework frameworks "
    "concern concerns concerned concerning deal deals dealt one ones "  # "which one concerns brands?"
    # function words that bm25s's short stop-word list keeps
    "from into onto upon within without about above below between among through during before after against "
    "toward towards via "
    "under over its their his her our your this these those there here than then also such other others "
    "more most some any each every all both either neither"
)


@lru_cache(maxsize=1)
def framing_words() -> frozenset[str]:
    return frozenset(content_words(FRAMING_WORDS))


STRUCTURAL_INTENTS = frozenset({"conclusion", "method", "contribution", "limitations", "future", "summary", "list", "authors"})


@dataclass(frozen=True)
class Weights:
    """How a sentence is scored (bench/calibrate.py): its meaning, the question's rare words,
    the relevance of the passage around it, and whether it sits where the question points."""

    sentence: float = 0.55
    overlap: float = 0.35
    passage: float = 0.10
    section: float = 0.10


@dataclass(frozen=True)
class Evidence:
    hit: int  # index into the hits the answer may cite
    sentence: int  # index into that hit's chunk sentences
    text: str  # as the answer shows it (table rows read with their header)
    score: float  # for ranking: text the paper reprints ranks below its own
    role: str
    section: str | None
    in_focus: bool  # under a heading the question points to
    named: bool  # a table cell whose header names what the question asks about
    strength: float  # how well it answers, whoever wrote it
    vector: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class Pool:
    """The passages an answer may quote: the retrieved ones first, then the ones the paper's
    structure adds, and the headings the question points to."""

    hits: list[Hit]
    wanted: frozenset[str] = frozenset()
    scope: tuple[tuple[int, int], ...] = ()  # chunk rows of the papers the question names
    abstract_in_focus: bool = False  # the abstract holds what the question asks and no heading names it
    focus_chunks: frozenset[str] = frozenset()  # chunks holding the table or figure the question names


def structural_pool(snapshot, plan: QueryPlan, hits: list[Hit], query_vector: np.ndarray, limit: int = 24) -> Pool:
    """The retrieved hits, then the chunks of the referenced papers (or of the best hit's paper)
    that lie where the question's intent points: its conclusion, its method, the subsections of
    the heading that matches, its front matter."""
    scope = tuple(paper_rows(snapshot, plan.papers)) if plan.papers else ()
    if plan.intent not in STRUCTURAL_INTENTS or not hits and not plan.papers:
        return Pool(hits, scope=scope)
    idf = topic_idf(plan, snapshot.keyword)
    papers = plan.papers or _list_paper(snapshot, plan, hits, idf) or (hits[0].paper.paper_id,)
    seen = {h.chunk.chunk_id for h in hits}
    extra: list[int] = []
    wanted: set[str] = set()
    captioned: set[str] = set()
    for start, stop in paper_rows(snapshot, papers):
        rows = range(start, stop)
        chunks = [snapshot.chunks[r] for r in rows]
        headings = focus_headings(plan, chunks, hits, idf)
        wanted |= headings
        for row, chunk in zip(rows, chunks):
            if plan.caption_ref and _holds_caption(chunk, plan.caption_ref):
                captioned.add(chunk.chunk_id)
                if chunk.chunk_id in seen:
                    continue
            elif chunk.chunk_id in seen or not _is_wanted(plan, chunk, headings, row - rows.start):
                continue
            extra.append(row)
            seen.add(chunk.chunk_id)
    extra = extra[:limit]
    # The abstract of a paper the question names states its contributions and method in brief,
    # and stands in for a section the question points to that the paper does not have; never
    # for its limitations or future work, which an abstract does not state.
    abstract = bool(plan.papers) and (
        plan.intent in ("contribution", "summary", "method", "list", "comparison")
        or plan.intent not in ("authors", "limitations", "future") and not wanted
    )
    abstract = abstract and not plan.caption_ref  # a table is no abstract's to stand in for
    pool = hits + [_hit_of(snapshot, row, query_vector) for row in extra]
    return Pool(pool, frozenset(wanted), scope, abstract, frozenset(captioned))


def _holds_caption(chunk: Chunk, ref: str) -> bool:
    return any(s.role == roles.CAPTION and captions(ref, chunk.sentence_text(s)) for s in chunk.sentences)


def _list_paper(snapshot, plan: QueryPlan, hits: list[Hit], idf: dict[str, float], papers: int = 3) -> tuple[str, ...]:
    """For a list asked of the whole library ("what strategies do the papers propose?"), the
    paper among the best hits' that has a heading matching the question with subsections under
    it: a paper that sets out the list as its own headings answers it best."""
    if plan.intent not in ("list", "summary") or not plan.topic_words:
        return ()
    for paper_id in list(dict.fromkeys(h.paper.paper_id for h in hits))[:papers]:
        (start, stop), = paper_rows(snapshot, [paper_id])
        if _list_heading(plan, snapshot.chunks[start:stop], idf):
            return (paper_id,)
    return ()


def _matching_headings(plan: QueryPlan, chunks: Sequence[Chunk], idf: dict[str, float]) -> list[str]:
    """A paper's headings that share two or more of the question's topic words, and a good part
    of their weight, best first: one shared word ("analysis", "dataset"), or only the words of
    the library's field ("cultural industry"), is a coincidence, not a pointer."""
    headings = list(dict.fromkeys(h for c in chunks for h in c.heading_path))
    total = sum(idf.values()) or 1.0
    out = []
    for heading in match_headings(plan, headings):
        words = set(content_words(heading))
        shared = [w for w in idf if stem_in(w, words)]
        if len(shared) >= 2 and sum(idf[w] for w in shared) >= HEADING_SHARE * total:
            out.append(heading)
    return out


def _list_heading(plan: QueryPlan, chunks: Sequence[Chunk], idf: dict[str, float]) -> str | None:
    """The best matching heading with two or more subsections: the paper sets out a list."""
    return next((h for h in _matching_headings(plan, chunks, idf) if len(_subsections(h, chunks)) > 1), None)


def _subsections(heading: str, chunks: Sequence[Chunk]) -> set[str]:
    return {c.heading_path[-1] for c in chunks if heading in c.heading_path[:-1]}


def topic_idf(plan: QueryPlan, keyword: KeywordIndex | None) -> dict[str, float]:
    words = [w for w in dict.fromkeys(plan.topic_words) if w not in framing_words()]
    return keyword.idf(words) if keyword else dict.fromkeys(words, 1.0)


def focus_headings(plan: QueryPlan, chunks: Sequence[Chunk], hits: list[Hit], idf: dict[str, float]) -> set[str]:
    """Headings of one paper that the question points to: those its intent names (a
    conclusion, a method), or for a list or a summary, the heading that matches the question's
    topic (one with subsections first, so that every subsection under it contributes)."""
    if plan.section_ref:  # "section 3.2", "the introduction of ...": that section, by number or name
        return set(section_headings(plan, list(dict.fromkeys(h for c in chunks for h in c.heading_path))))
    if plan.intent in ("list", "summary") and plan.topic_words:
        heading = _list_heading(plan, chunks, idf) or next(iter(_matching_headings(plan, chunks, idf)), None)
        return {heading} if heading else set()
    headings = list(dict.fromkeys(h for c in chunks for h in c.heading_path))
    return set(section_headings(plan, headings))


def _is_wanted(plan: QueryPlan, chunk: Chunk, wanted: set[str], position: int) -> bool:
    if plan.intent == "authors":
        return chunk.role == roles.FRONT or position == 0
    # An abstract states a paper's contributions, method and findings in brief.
    return chunk.role == roles.FRONT or bool(wanted & set(chunk.heading_path))


def _hit_of(snapshot, row: int, query_vector: np.ndarray) -> Hit:
    return Hit(
        chunk=snapshot.chunks[row],
        paper=snapshot.paper_of(row),
        score=0.0,
        dense_rank=None,
        keyword_rank=None,
        dense_score=float(snapshot.chunk_vector(row) @ query_vector),
        sentence_vectors=snapshot.sentence_matrix(row),
    )


def gather(
    question: str,
    focus: str,
    query_vector: np.ndarray,
    hits: list[Hit],
    keyword: KeywordIndex | None,
    weights: Weights,
    wanted: frozenset[str] = frozenset(),
    abstract_in_focus: bool = False,
    front_lines: bool = False,
    focus_chunks: frozenset[str] = frozenset(),
) -> list[Evidence]:
    """Every quotable sentence of `hits`, scored, best first. `focus` is the question as asked;
    `question` may include the conversation for follow-ups, whose words weigh half. The front
    matter's lines (title, names, addresses) are evidence only with `front_lines`."""
    framing = framing_words()
    q_words = [w for w in dict.fromkeys(content_words(question)) if w not in framing] or list(dict.fromkeys(content_words(question)))
    focus_words = set(content_words(focus))
    idf = keyword.idf(q_words) if keyword else dict.fromkeys(q_words, 1.0)
    word_weight = {w: idf[w] * (2.0 if w in focus_words else 1.0) for w in q_words}
    total = sum(word_weight.values()) or 1.0
    out = []
    for h_i, hit in enumerate(hits):
        if hit.sentence_vectors is None:
            continue
        cosines = hit.sentence_vectors @ query_vector
        passage = hit.dense_score if hit.dense_score is not None else 0.0
        abstract = is_abstract(hit.chunk)
        in_focus = (
            bool(wanted & set(hit.chunk.heading_path)) or abstract_in_focus and abstract or hit.chunk.chunk_id in focus_chunks
        )
        title = _plain(hit.paper.title)
        context = set(content_words(hit.chunk.context))
        lead = 0.0  # score of a sentence announcing a list ("The contributions are as follows:")
        for s_i, span in enumerate(hit.chunk.sentences):
            role = span.role
            if role in NEVER_QUOTED:
                continue
            text = answer_text_of(hit.chunk, s_i)
            if text is None or _plain(text) == title or title in _plain(text) and not front_lines:
                continue  # a paper's title names it; it says nothing about it
            if role == roles.FRONT and not (abstract or front_lines or _prose(text)):
                continue  # names and addresses answer who wrote a paper, nothing else
            words = set(content_words(text))
            # A heading's words describe every sentence under it, so they count half.
            overlap = sum(word_weight[w] * (1.0 if w in words else 0.5 * (w in context)) for w in q_words) / total
            score = weights.sentence * float(cosines[s_i]) + weights.overlap * overlap + weights.passage * passage
            named = role == roles.TABLE and _header_named(text, q_words)  # a cell the question names
            if in_focus or named:
                score += weights.section
            strength = score
            if role in NOT_OWN:
                score *= NOT_OWN_FACTOR
            if text.endswith(":"):
                lead = score  # it announces the items; they are the answer, not it
                continue
            if _BULLET.match(text):
                score = max(score, lead)
            else:
                lead = 0.0
            out.append(
                Evidence(h_i, s_i, text, score, role, hit.chunk.section, in_focus, named, strength, hit.sentence_vectors[s_i])
            )
    return _unique(sorted(out, key=lambda e: -e.score), hits)


def _unique(evidence: list[Evidence], hits: list[Hit]) -> list[Evidence]:
    """Overlapping chunks share sentences: each sentence once, from its best-scoring chunk."""
    seen, out = set(), []
    for e in evidence:
        key = (hits[e.hit].paper.paper_id, hits[e.hit].chunk.sentences[e.sentence].start)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out




_BULLET = re.compile(r"^\s*([•●▪‣◦*–-]|\(?\d{1,2}[.)]|\(?[a-z][.)])\s")


_ROADMAP = re.compile(
    r"^\s*(in )?sections? \d|\b(is|are) organi[sz]ed as follows\b|\bthe rest of (the|this) (paper|article)\b"
    r"|\b(discussed|described|presented|elaborated|introduced|detailed|given) in sections? \d"
    r"|^\s*(more |further )?details (can be|are) (found|given|provided)\b"
    r"|^\s*in the following\b|\bin the following\s*[.:]?\s*$|^\s*in this (sub)?section\b.{0,40}\bdetails\b",
    re.I,
)
_KEYWORDS_LINE = re.compile(r"^\W*(key ?words|index terms)\W", re.I)


def _header_named(row: str, q_words: list[str]) -> bool:
    """A table row read with its headers ("Opportunities: ...; Threats: ...") whose header
    names a word of the question: the table says what the question asks about."""
    return bool(row_headers(row) & set(q_words))


def row_headers(row: str) -> set[str]:
    """The content words of the headers a table row is read with ("Opportunities: ...")."""
    return set(content_words(" ".join(cell.split(":", 1)[0] for cell in row.split("; ") if ":" in cell)))


def _prose(text: str) -> bool:
    """A sentence rather than a line of names or an address: a third of its words or more
    are lowercase ("Victor SANH, Lysandre DEBUT" and "School of Business, Minsk" are not), and
    it holds no e-mail address ("{victor,lysandre}@huggingface.co" is lowercase but a line)."""
    if re.search(r"\S@\w", text):
        return False
    words = re.findall(r"[^\W\d_]+", text)
    return len(words) >= 5 and 3 * sum(w[0].islower() for w in words) >= len(words)


def _mostly_numbers(text: str) -> bool:
    tokens = text.split()
    return sum(not re.search(r"[^\W\d_]", t) for t in tokens) * 2 >= len(tokens)  # tokens without a letter


def _plain(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


# A paper's own numbered references ("[1]", "[6-8]", "[9, 10]") inside a sentence it says.
_OWN_REFERENCE = re.compile(r"\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\]")


def _own_references(text: str) -> str:
    """The paper's "[1]" shown as "(ref. 1)": in an answer, "[n]" is only ever our citation of
    source n, and a reader clicking the paper's "[1]" would open our first source instead."""
    return _OWN_REFERENCE.sub(lambda m: f"(ref. {m.group(1)})", text)


def answer_text_of(chunk: Chunk, index: int) -> str | None:
    """A sentence as the answer shows it, its own numbered references as "(ref. n)": see
    `_answer_text_of`."""
    text = _answer_text_of(chunk, index)
    return _own_references(text) if text else text


def _answer_text_of(chunk: Chunk, index: int) -> str | None:
    """A sentence as the answer shows it: table rows read with their header, a sentence that
    opens with a pronoun together with the sentence it refers back to. None for headings,
    table headers and fragments, which are not answers."""
    span = chunk.sentences[index]
    raw = chunk.sentence_text(span)
    if "\t" in raw:
        row = table_row_text(chunk, index)
        if not row or ":" not in row and _mostly_numbers(raw.replace("\t", " ")):
            return None  # a header, or figures without the names of their columns
        return tidy(row)
    if _KEYWORDS_LINE.match(raw):
        return None  # a paper's keywords are a list of topics, not a statement
    if _mostly_numbers(raw):
        return None  # a row of figures torn from its table says nothing on its own
    if raw[:1].islower():
        return None  # the tail of a sentence cut by the layout, not a sentence
    if raw.rstrip().endswith("?") or _ROADMAP.search(raw):
        return None  # a question the paper asks, or a pointer to where it says things: not a statement
    if len(content_words(raw)) < 3 or is_instruction(raw):
        return None
    if _leans_back(raw):
        if index == 0:
            return None  # "He is ..." without its antecedent; the overlapping chunk before has both
        return tidy(chunk.sentence_text(chunk.sentences[index - 1])) + " " + tidy(raw)
    return tidy(raw)


def quote_span(chunk: Chunk, index: int) -> Span:
    """The exact span a citation quotes: the sentence, plus the one before when it leans back."""
    span = chunk.sentences[index]
    raw = chunk.sentence_text(span)
    if index > 0 and "\t" not in raw and _leans_back(raw):
        return Span(chunk.sentences[index - 1].start, span.end, chunk.sentences[index - 1].page)
    return span


def _leans_back(sentence: str) -> bool:
    """Opens with a pronoun, or is a bare line such as a job title under a name."""
    return bool(re.match(r"(He|She|It|They|This|These|Those|Its|Their|His|Her)\b", sentence)) or len(sentence.split()) <= 6


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if re.search(r"[.!?:;)\]\"”]$", text) else text + "."
