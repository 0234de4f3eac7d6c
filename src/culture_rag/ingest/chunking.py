"""Sentence-aware chunking sized with the embedding model's own tokenizer.

Sentences (and table rows, which the papers keep as tab-separated lines) are packed into
chunks of at most `max_tokens` word pieces, so the embedder never truncates a chunk. The last
sentences of a chunk open the next one (overlap). Every chunk and sentence keeps its character
offsets into the paper's cleaned text, so a citation can quote exactly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Protocol

import sentencex

from culture_rag.ingest import regions as roles
from culture_rag.ingest.parsed import Locator, Paper, Region
from culture_rag.types import Chunk, Span


class Tokenizer(Protocol):
    def count(self, texts: list[str]) -> list[int]:
        """Word pieces per text, without special tokens."""

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character spans of consecutive pieces of `text` of at most `max_tokens` word pieces."""


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Sentences and table rows of `text`, as spans shifted by `offset`. Lines with tabs are table
    rows and stay whole; other lines are split into sentences by sentencex (Wikimedia's rule-based
    segmenter, in Rust): 70x faster than pysbd on the aragog PDFs, which made sentence splitting
    the largest cost of indexing after the model (bench/indexing.py)."""
    spans: list[Span] = []
    for line in re.finditer(r"[^\n]+", text):
        body = line.group()
        if not body.strip():
            continue
        base = offset + line.start()
        if "\t" in body or len(body) < 40:
            spans.append(_trimmed(body, base, 0, len(body)))
            continue
        for sentence in sentencex.get_sentence_boundaries("en", body):
            spans.append(_trimmed(body, base, sentence["start_index"], sentence["end_index"]))
    return [s for s in spans if s.end > s.start]


def _trimmed(body: str, base: int, start: int, end: int) -> Span:
    while start < end and body[start].isspace():
        start += 1
    while end > start and body[end - 1].isspace():
        end -= 1
    return Span(base + start, base + end)


def chunk_paper(
    paper: Paper, tokenizer: Tokenizer, max_tokens: int, overlap_tokens: int, limit: int | None = None
) -> list[Chunk]:
    """`max_tokens` sizes the text; `limit` (the model's window) bounds text plus context."""
    limit = limit or max_tokens
    units = _units(paper, tokenizer, max_tokens)
    locator = Locator(paper.regions)
    roles_of = [_region_role(locator.at(span.start)) for span, _ in units]
    groups = _pack(units, _table_blocks(paper.text, units, roles_of), max_tokens, overlap_tokens, _section_breaks(paper))
    chunks = [_make_chunk(paper, group, locator) for group in groups]
    return _with_context(chunks, paper, tokenizer, limit)


def _with_context(chunks: list[Chunk], paper: Paper, tokenizer: Tokenizer, limit: int) -> list[Chunk]:
    """Give each chunk its heading as context, so that a table row or a pronoun-heavy paragraph
    still carries its topic; cut the heading to the room the model's window leaves."""
    out = []
    for chunk in chunks:
        header = chunk.section or paper.title
        table_header = _table_header(paper.text, chunk.start)
        if table_header:  # a chunk that starts inside a table keeps the table's column names
            header = f"{header}\n{table_header}"
        room = limit - chunk.n_tokens - 1  # one piece for the line break's boundary
        if header and room > 0:
            if tokenizer.count([header])[0] > room:
                a, b = tokenizer.windows(header, room)[0]
                header = header[a:b]
            out.append(replace(chunk, context=header.strip()))
        else:
            out.append(chunk)
    return out


def _units(paper: Paper, tokenizer: Tokenizer, max_tokens: int) -> list[tuple[Span, int]]:
    spans = split_sentences(paper.text)
    counts = tokenizer.count([paper.text[s.start : s.end] for s in spans])
    units: list[tuple[Span, int]] = []
    for span, n in zip(spans, counts):
        if n <= max_tokens:
            units.append((span, n))
            continue
        # A sentence longer than the model's window (tables flattened by PDF extraction):
        # cut it at word-piece boundaries rather than let the model truncate it silently.
        units.extend(_cut(paper.text, span, tokenizer, max_tokens, max_tokens))
    return units


def _cut(text: str, span: Span, tokenizer: Tokenizer, max_tokens: int, window: int) -> list[tuple[Span, int]]:
    """`span` in pieces of at most `max_tokens` word pieces each, counted alone. A piece cut out
    of a word is read from a word's start again and can take more pieces alone than in place
    ("0S0000000" cut inside: 11 for 10), so a piece that does not fit is cut again, tighter."""
    body = text[span.start : span.end]
    pieces = [Span(span.start + a, span.start + b) for a, b in tokenizer.windows(body, window)]
    out: list[tuple[Span, int]] = []
    for piece, n in zip(pieces, tokenizer.count([text[p.start : p.end] for p in pieces])):
        if n <= max_tokens or piece.end - piece.start <= 1:
            out.append((piece, n))
        else:  # smaller each time (the piece is cut in two or more), so this ends
            out.extend(_cut(text, piece, tokenizer, max_tokens, max(1, 2 * max_tokens - n)))
    return out


def _table_header(text: str, start: int) -> str | None:
    """The first row of the tab-separated table that `start` falls in, if it lies before `start`."""
    line_start = text.rfind("\n", 0, start) + 1
    if "\t" not in text[line_start : text.find("\n", start) if "\n" in text[start:] else len(text)]:
        return None
    first = line_start
    while first > 0:
        prev_start = text.rfind("\n", 0, first - 1) + 1
        if "\t" not in text[prev_start : first - 1]:
            break
        first = prev_start
    if first >= start:
        return None
    return text[first : text.find("\n", first)]


def _region_role(region: Region | None) -> str:
    return region.role if region is not None else roles.BODY


# Roles that never share a chunk with the paper's own text: a question about the paper's
# findings must not retrieve a chunk that is half reference list or half a reprinted article.
_APART = {roles.REFERENCE: "reference", roles.QUOTED: "quoted", roles.FRONT: "front"}


def _section_breaks(paper: Paper) -> set[int]:
    """Offsets where a chunk must end: every heading (the start of a section) and every change
    into or out of front matter, references or quoted text."""
    breaks, previous = set(), None
    for region in paper.regions:
        group = _APART.get(region.role, "paper")
        if previous is not None and (
            region.role == roles.HEADING or region.section != previous.section or group != _APART.get(previous.role, "paper")
        ):
            breaks.add(region.start)
        elif previous is None and region.section is not None:
            breaks.add(region.start)
        previous = region
    return breaks


def _table_blocks(text: str, units: list[tuple[Span, int]], roles_of: list[str]) -> list[int]:
    """Word pieces of the table (caption and rows) that each unit opens, 0 for other units.
    A table that fits in one chunk is kept whole, so its rows stay with their header."""
    is_row = ["\t" in text[s.start : s.end] or role == roles.TABLE for (s, _), role in zip(units, roles_of)]
    opens = [0] * len(units)
    i = 0
    while i < len(units):
        if not is_row[i]:
            i += 1
            continue
        first = i - 1 if i > 0 and re.match(r"(Table|Tab\.)\s*\d", text[units[i - 1][0].start : units[i - 1][0].end]) else i
        end = i
        while end < len(units) and is_row[end]:
            end += 1
        opens[first] = sum(n for _, n in units[first:end])
        i = end
    return opens


def _pack(
    units: list[tuple[Span, int]], opens: list[int], max_tokens: int, overlap_tokens: int, breaks: set[int]
) -> list[list[tuple[Span, int]]]:
    groups: list[list[tuple[Span, int]]] = []
    current: list[tuple[Span, int]] = []
    fresh = 0  # units in `current` not carried over from the previous chunk
    for unit, block in zip(units, opens):
        span, n = unit
        starts_section = any(current and current[-1][0].end <= b <= span.start for b in breaks)
        need = block if n < block <= max_tokens else n  # a table that fits moves whole to the next chunk
        if current and (starts_section or sum(c[1] for c in current) + need > max_tokens):
            if fresh:
                groups.append(current)
            current = [] if starts_section else _tail(current, overlap_tokens, max_tokens - need)
            fresh = 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        groups.append(current)
    return groups


def _tail(units: list[tuple[Span, int]], overlap_tokens: int, room: int) -> list[tuple[Span, int]]:
    tail: list[tuple[Span, int]] = []
    total = 0
    for unit in reversed(units[1:]):  # never carry a whole chunk over
        if total + unit[1] > min(overlap_tokens, room):
            break
        tail.insert(0, unit)
        total += unit[1]
    return tail


def _make_chunk(paper: Paper, group: list[tuple[Span, int]], locator: Locator) -> Chunk:
    start, end = group[0][0].start, group[-1][0].end
    page_start, page_end = locator.pages(start, end)
    section = locator.section(start)
    digest = hashlib.sha256(f"{paper.content_hash}:{start}:{end}".encode()).hexdigest()[:20]
    sentences = []
    for span, _ in group:
        region = locator.at(span.start)
        page = region.page if region is not None and region.end > span.start else locator.pages(span.start, span.start + 1)[0]
        sentences.append(replace(span, page=page, role=_region_role(region)))
    path = locator.heading_path(start) or ((section,) if section else ())
    return Chunk(
        chunk_id=digest,
        paper_id=paper.paper_id,
        text=paper.text[start:end],
        start=start,
        end=end,
        n_tokens=sum(n for _, n in group),
        sentences=tuple(sentences),
        page_start=page_start,
        page_end=page_end,
        section=section,
        role=roles.dominant_role([(s.role, s.end - s.start) for s in sentences]),
        heading_path=path,
    )


def is_abstract(chunk: Chunk) -> bool:
    """A chunk of a paper's abstract: front matter under an "Abstract" (or "Summary") heading."""
    return chunk.role == roles.FRONT and any(h.lower().startswith(("abstract", "summary")) for h in chunk.heading_path)


BODY_PASSAGE, ABSTRACT_PASSAGE, REFERENCE_PASSAGE = 0, 1, 2


def passage_kind(chunk: Chunk) -> int:
    """What retrieval weighs a passage by (retrieval.py), kept per row by the index so that
    ranking candidates reads no chunk: an abstract, a bibliography entry, or anything else."""
    if is_abstract(chunk):
        return ABSTRACT_PASSAGE
    return REFERENCE_PASSAGE if chunk.role == roles.REFERENCE else BODY_PASSAGE


def sentence_spans_in_embed_text(chunk: Chunk) -> list[tuple[int, int]]:
    """The chunk's sentences as spans of `chunk.embed_text` (which starts with the context line)."""
    shift = len(chunk.context) + 1 - chunk.start if chunk.context else -chunk.start
    return [(s.start + shift, s.end + shift) for s in chunk.sentences]


def table_row_text(chunk: Chunk, index: int) -> str | None:
    """A table row read with its header ('Cultural Industry: Media; Export Value (2020): $5
    billion'), or None when sentence `index` is not a data row."""
    raw = chunk.sentence_text(chunk.sentences[index])
    if "\t" not in raw:
        return None
    if looks_like_header(raw):
        return None
    header = table_header_for(chunk, index)
    return render_row(header, raw) if header else raw.replace("\t", "; ")


def table_header_for(chunk: Chunk, index: int) -> str | None:
    """The header of the table a row belongs to: the nearest header-like row above it in its
    block (tables such as a SWOT grid have several), else the header the chunker put in the
    chunk's context for a chunk that starts inside a table, else the block's first row."""
    block_first = None
    for j in range(index - 1, -1, -1):
        text = chunk.sentence_text(chunk.sentences[j])
        if "\t" not in text:
            break
        if looks_like_header(text):
            return text
        block_first = text
    context_rows = [line for line in chunk.context.split("\n") if "\t" in line]
    if context_rows and (block_first is None or index == 0 or block_first == chunk.sentence_text(chunk.sentences[0])):
        return context_rows[-1]
    return block_first


def looks_like_header(row: str) -> bool:
    """Column names are short, capitalized and carry no figures."""
    cells = [c.strip() for c in row.split("\t") if c.strip()]
    return bool(cells) and all(len(c.split()) <= 5 and c[0].isupper() and not re.search(r"[%$]", c) for c in cells)


def render_row(header: str, row: str) -> str:
    """'Cultural Industry: Media; Export Value (2020): $5 billion; Key Export Markets: Africa'."""
    names, cells = header.split("\t"), row.split("\t")
    if len(names) != len(cells):
        return "; ".join(c.strip() for c in cells if c.strip())
    return "; ".join(f"{n.strip()}: {c.strip()}" for n, c in zip(names, cells) if c.strip())


def table_cells(chunk: Chunk, index: int) -> list[str] | None:
    """Each cell of table row `index` read with its headers, or None when it is not a data row.

    In a grid whose header rows name the cells below them (a 2x2 SWOT table: "Strengths |
    Weaknesses", a row of items, "Opportunities | Threats", a row of items) a cell reads
    "Strengths: Strong cultural heritage; Emerging creative industries". In a table with one
    header row, the first column names the row: "Film, Export Value (2020): $10 billion"."""
    raw = chunk.sentence_text(chunk.sentences[index])
    if "\t" not in raw or looks_like_header(raw):
        return None
    cells = [c.strip() for c in raw.split("\t")]
    header = table_header_for(chunk, index)
    names = [n.strip() for n in header.split("\t")] if header else []
    if len(names) != len(cells):
        return [_items(c) for c in cells if c]
    if _header_rows(chunk, index) >= 2:
        return [f"{n}: {_items(c)}" for n, c in zip(names, cells) if c]
    return [f"{cells[0]}, {n}: {c}" for n, c in zip(names[1:], cells[1:]) if c] or [f"{names[0]}: {cells[0]}"]


def _header_rows(chunk: Chunk, index: int) -> int:
    """Header-like rows in the block of tab-separated rows that sentence `index` belongs to."""
    texts = [chunk.sentence_text(s) for s in chunk.sentences]
    lo = index
    while lo > 0 and "\t" in texts[lo - 1]:
        lo -= 1
    hi = index
    while hi + 1 < len(texts) and "\t" in texts[hi + 1]:
        hi += 1
    return sum(looks_like_header(t) for t in texts[lo : hi + 1])


_FUNCTION_WORDS = frozenset("a an and as at by for from in into of on or the to under with within".split())


def _items(cell: str) -> str:
    """A cell whose bullet list lost its bullets ("... crafts and arts Emerging creative
    industries ...") gets its items back: a new item starts at a capitalized word after a
    lowercase word (or an acronym) that is not a function word. Cells with their own punctuation, or short
    ones, are left alone."""
    words = cell.split()
    if len(words) < 12 or re.search(r"[,;.:]", re.sub(r"\([^)]*\)", "", cell)):
        return cell
    out = [words[0]]
    for prev, word in zip(words, words[1:]):
        starts_item = (
            word[:1].isupper()
            and not word.isupper()
            and (prev[-1:] == ")" or prev.islower() or (prev.isupper() and len(prev) > 1))  # "... under BRI Increased ..."
            and prev.lower() not in _FUNCTION_WORDS
        )
        out.append(f"; {word}" if starts_item else f" {word}")
    return "".join(out)
