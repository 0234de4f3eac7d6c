"""Answers and conversations as Markdown with a numbered reference list, and the cited papers as
BibTeX.

One input type: `ExportedAnswer`, built from the engine's `Answer` or from the dict the web app
keeps per answer (serialize.answer_json), so the CLI, the API and the chat's button write the
same text. Citation numbers are renumbered in order of first use, one list for a whole
conversation, where the same quote of the same paper gets one number.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from culture_rag.answer.citations import MARKER


@dataclass(frozen=True)
class Source:
    """A cited paper, as much as a reference or a BibTeX entry needs."""

    paper_id: str
    title: str
    authors: tuple[str, ...] = ()
    year: int | None = None
    doi: str | None = None
    arxiv_id: str | None = None
    venue: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, paper) -> Source:
        """From a PaperInfo (or anything with its fields) or a citation/paper dict."""
        get = paper.get if isinstance(paper, Mapping) else (lambda name, default=None: getattr(paper, name, default))
        return cls(
            paper_id=get("paper_id"),
            title=get("title") or "Untitled",
            authors=tuple(get("authors") or ()),
            year=get("year"),
            doi=get("doi"),
            arxiv_id=get("arxiv_id"),
            venue=get("venue"),
            url=get("url"),
        )


@dataclass(frozen=True)
class Reference:
    n: int
    paper: Source
    location: str  # "p. 4", "pp. 4–5", "§ Methods"
    section: str | None
    quote: str


@dataclass(frozen=True)
class ExportedAnswer:
    question: str
    text: str  # with [n] markers
    answered: bool
    references: tuple[Reference, ...]
    notice: str = ""

    @classmethod
    def of(cls, answer) -> ExportedAnswer:
        """From an `Answer`, the dict of serialize.answer_json, or an ExportedAnswer."""
        if isinstance(answer, ExportedAnswer):
            return answer
        if isinstance(answer, Mapping):
            refs = tuple(
                Reference(c["n"], Source.of(c), c.get("location") or "", c.get("section"), c.get("quote", ""))
                for c in answer.get("citations", ())
            )
            return cls(answer.get("question", ""), answer.get("text", ""), bool(answer.get("answered")), refs, answer.get("notice", ""))
        refs = tuple(Reference(c.n, Source.of(c.paper), c.location, c.chunk.section, c.quote) for c in answer.citations)
        return cls(answer.question, answer.text, answer.answered, refs, answer.notice)


# --- Markdown ----------------------------------------------------------------------------------


def answer_markdown(answer) -> str:
    """One answer: the question as a heading, the answer with its [n] markers, its references."""
    return conversation_markdown([answer], title=None)


def conversation_markdown(turns: Iterable, title: str | None = "Conversation") -> str:
    """Question and answer after question and answer, then one reference list for them all."""
    answers = [ExportedAnswer.of(t) for t in turns]
    numbering = _Numbering()
    parts = [f"# {_md(title)}\n"] if title and len(answers) > 1 else []
    level = "##" if len(parts) else "#"
    for answer in answers:
        parts.append(f"{level} {_md(answer.question)}\n")
        parts.append(_answer_body(answer, numbering) + "\n")
    if numbering.references:
        parts.append("## References\n")
        parts.append("\n".join(_reference_line(n, ref) for n, ref in numbering.references) + "\n")
    return "\n".join(parts)


class _Numbering:
    """New numbers in order of first use; the same paper and quote keep one number."""

    def __init__(self) -> None:
        self.references: list[tuple[int, Reference]] = []
        self._by_key: dict[tuple[str, str], int] = {}

    def number(self, ref: Reference) -> int:
        key = (ref.paper.paper_id or ref.paper.title, " ".join(ref.quote.split()))
        if key not in self._by_key:
            self._by_key[key] = len(self.references) + 1
            self.references.append((self._by_key[key], ref))
        return self._by_key[key]


def _answer_body(answer: ExportedAnswer, numbering: _Numbering) -> str:
    refs = {r.n: r for r in answer.references}

    def renumber(found: re.Match) -> str:
        numbers = [int(x) for x in re.findall(r"\d+", found.group(1))]
        new = [numbering.number(refs[n]) for n in numbers if n in refs]
        return " " + "".join(f"[{m}]" for m in dict.fromkeys(new)) if new else ""

    pieces, pos = [], 0
    for found in MARKER.finditer(answer.text):
        pieces.append(_md(answer.text[pos : found.start()]))
        pieces.append(renumber(found))
        pos = found.end()
    pieces.append(_md(answer.text[pos:]))
    lines = [ln for ln in "".join(pieces).split("\n") if ln.strip()]
    # A broad answer has one point a line: a list, as the chat shows it.
    body = "\n".join(f"- {ln}" for ln in lines) if len(lines) > 1 else "".join(lines)
    if answer.notice:
        body += f"\n\n*{_md(answer.notice)}*"
    return body


def _reference_line(n: int, ref: Reference) -> str:
    paper = ref.paper
    who = _names(paper.authors)
    year = f" ({paper.year})" if paper.year else ""
    where = ref.location
    if ref.section and ref.section not in where:
        where = f"{where}, § {ref.section}" if where else f"§ {ref.section}"
    # An autolink's text is literal (no escapes inside): DOIs and arXiv ids hold no spaces or <>.
    link = f" <https://doi.org/{paper.doi}>" if paper.doi else (f" <https://arxiv.org/abs/{paper.arxiv_id}>" if paper.arxiv_id else "")
    head = f"{n}. {_md(who)}{year}. *{_md(paper.title)}*." + (f" {_md(where)}." if where else "") + link
    return f"{head}\n   > “{_md(' '.join(ref.quote.split()))}”"


def _names(authors: tuple[str, ...]) -> str:
    if not authors:
        return "Authors unknown"
    return ", ".join(authors[:-1]) + (" and " if len(authors) > 1 else "") + authors[-1]


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: str) -> str:
    """Document text shown literally in Markdown: no emphasis, link, HTML or heading made of it."""
    out = _MD_SPECIAL.sub(r"\\\1", text)
    out = re.sub(r"(?m)^(\s*)([-+=])", r"\1\\\2", out)  # a list item, a setext underline, a rule
    return re.sub(r"(?m)^(\s*\d+)([.)])", r"\1\\\2", out)  # an ordered list item: "1\."


# --- BibTeX ------------------------------------------------------------------------------------


def cited_papers(answers: Iterable) -> list[Source]:
    """The papers the answers cite, each once, in order of first citation."""
    seen: dict[str, Source] = {}
    for answer in answers:
        for ref in ExportedAnswer.of(answer).references:
            seen.setdefault(ref.paper.paper_id or ref.paper.title, ref.paper)
    return list(seen.values())


_STOP = frozenset("a an the on of in for and to with from by at as is are towards toward via about into".split())
_CONFERENCE = re.compile(r"\b(proceedings|conference|workshop|symposium|meeting)\b", re.IGNORECASE)
_VERBATIM = frozenset({"doi", "url", "eprint"})  # biblatex reads these verbatim: no LaTeX escapes
# latexcodec (pybtex's encoder) turns text symbols into LaTeX ("&" → "\&") but leaves these as
# markup, since it assumes LaTeX input; titles and names here are plain text.
_PLAIN_TEXT_MARKUP = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "^": r"\^{}"}


def bibtex(papers: Iterable) -> str:
    """BibTeX entries for papers (PaperInfo, Source or their dicts): @inproceedings or @article
    when the venue is known, @misc otherwise (arXiv papers as eprints). Keys are the first
    author's surname, the year and the title's first word (devlin2018bert), made unique."""
    from pybtex.database import BibliographyData, Entry, Person

    entries: dict[str, Entry] = {}
    for paper in papers:
        source = paper if isinstance(paper, Source) else Source.of(paper)
        persons = [Person(_latex_plain(name)) for name in source.authors]
        kind, fields = _entry_fields(source)
        key = _unique_key(_key(source, persons), entries)
        entries[key] = Entry(kind, fields=fields, persons={"author": persons} if persons else {})
    return _verbatim_writer().to_string(BibliographyData(entries))


def _entry_fields(source: Source) -> tuple[str, dict[str, str]]:
    fields = {"title": _protect_capitals(_latex_plain(source.title))}
    kind = "misc"
    if source.venue:
        kind = "inproceedings" if _CONFERENCE.search(source.venue) else "article"
        fields["booktitle" if kind == "inproceedings" else "journal"] = _latex_plain(source.venue)
    if source.year:
        fields["year"] = str(source.year)
    if source.doi:
        fields["doi"] = source.doi
    if source.arxiv_id:
        fields.update(eprint=source.arxiv_id, archiveprefix="arXiv")
    if source.url:
        fields["url"] = source.url
    return kind, fields


def _latex_plain(text: str) -> str:
    return "".join(_PLAIN_TEXT_MARKUP.get(c, c) for c in text)


def _protect_capitals(title: str) -> str:
    """Braces keep BibTeX styles from lower-casing acronyms and names written in capitals
    inside a word (BERT, HellaSwag); a title's ordinary capitals are left to the style."""
    return re.sub(r"(?<![\\\w])([^\W\d_]\w*[A-Z]\w*)", r"{\1}", title)


def _ascii_word(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower())


def _key(source: Source, persons) -> str:
    surname = ""
    if persons:
        surname = _ascii_word(" ".join(persons[0].last_names) or str(persons[0]))
    words = [_ascii_word(w) for w in re.findall(r"[^\W_]+", source.title)]
    first = next((w for w in words if w and w not in _STOP), "")
    return f"{surname or 'anon'}{source.year or ''}{first}" or "paper"


def _unique_key(key: str, taken: Mapping) -> str:
    if key not in taken:
        return key
    suffix = 0
    while True:
        suffix += 1
        candidate = f"{key}{_letters(suffix)}"
        if candidate not in taken:
            return candidate


def _letters(n: int) -> str:
    """1 → a, 26 → z, 27 → aa."""
    out = ""
    while n:
        n, rest = divmod(n - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


def _verbatim_writer():
    from pybtex.database.output.bibtex import Writer

    class VerbatimWriter(Writer):
        """pybtex's BibTeX writer, with DOIs, URLs and eprints written as they are."""

        def _write_field(self, stream, type, value):
            if type in _VERBATIM:
                stream.write(f",\n    {type} = {self.quote(value)}")
            else:
                super()._write_field(stream, type, value)

    return VerbatimWriter()
