"""What each line of a paper is: front matter, heading, body, caption, table, reference,
boilerplate, or quoted material that is not the paper's own.

Plain rules over the lines of a paper in reading order (PDF layout lines or text paragraphs),
with a small vocabulary of section names. No model: a paper is classified in milliseconds.

- Headings: Markdown marks; numbered lines ("3.2 Pre-training BERT", "4. Conclusion") whose
  numbers continue the paper's numbering (3 > 3.1 > 3.2 > 4), so list items, years and table
  rows that start with a number are not taken for headings; letter-numbered appendix headings
  ("A.1 ...") only after the references or an "Appendix" heading; and whole lines that name a
  common section ("Abstract", "Related Work", "References", ...).
- Front matter: the lines before the first heading (title, authors, affiliations, e-mails), the
  abstract up to the next heading, keyword lines, and lines repeating the known title, authors
  or affiliation.
- References: everything after a References/Bibliography heading until the next heading.
- Figure: in a PDF, the text inside a figure or a code listing comes out as runs of very
  short lines (axis labels, boxes, code); three or more in a row are figure text.
- Quoted: a figure that reproduces another text (a reprinted article) shows up as text before
  its caption; it is recognized by the caption repeating a line of it, or by a byline
  ("By JANE DOE"), and runs to the caption or the next heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

FRONT = "front"
HEADING = "heading"
BODY = "body"
CAPTION = "caption"
TABLE = "table"
REFERENCE = "reference"
BOILERPLATE = "boilerplate"
QUOTED = "quoted"
FIGURE = "figure"
ROLES = (FRONT, HEADING, BODY, CAPTION, TABLE, REFERENCE, BOILERPLATE, QUOTED, FIGURE)
# One letter a role, for storing a chunk's sentence roles as one short string.
ROLE_CODES = {FRONT: "f", HEADING: "h", BODY: "b", CAPTION: "c", TABLE: "t", REFERENCE: "r", BOILERPLATE: "x", QUOTED: "q", FIGURE: "g"}

# Section names recognized as headings when they make up a whole line (case-insensitive).
_NAMED_SECTIONS = {
    "abstract": "abstract",
    "introduction": "main",
    "background": "main",
    "related work": "main",
    "related works": "main",
    "literature review": "main",
    "method": "main",
    "methods": "main",
    "methodology": "main",
    "materials and methods": "main",
    "experiments": "main",
    "results": "main",
    "discussion": "main",
    "results and discussion": "main",
    "limitations": "main",
    "conclusion": "main",
    "conclusions": "main",
    "conclusion and future work": "main",
    "conclusions and future work": "main",
    "future work": "main",
    "acknowledgment": "main",
    "acknowledgments": "main",
    "acknowledgement": "main",
    "acknowledgements": "main",
    "ethics statement": "main",
    "broader impact": "main",
    "appendix": "appendix",
    "appendices": "appendix",
    "supplementary material": "appendix",
    "references": "references",
    "bibliography": "references",
    "works cited": "references",
    "literature cited": "references",
}

_NUMBER = r"(?P<num>\d{1,2}(?:\.\d{1,2}){0,3}|[A-Z](?:\.\d{1,2}){0,3})"
_NUMBERED = re.compile(rf"^{_NUMBER}(?P<dot>\.?)\s+(?P<title>\S.*)$")
_ABSTRACT_LABEL = re.compile(r"^(abstract|summary)\s*(?:[:.—–-]\s*|\s+(?=\S))(?=\S)", re.IGNORECASE)
_KEYWORDS = re.compile(r"^[*_\s]*(key ?words|index terms)[*_\s]*[:.—–]", re.IGNORECASE)
_CAPTION = re.compile(r"^(figure|fig\.|table|tab\.|chart|algorithm|listing)\s*\d+[a-z]?\s*(?:[:.|]\s*\S|$)", re.IGNORECASE)
_APPENDIX_START = re.compile(r"^(appendix|appendices|supplementary material)\b", re.IGNORECASE)
_CAPTION_INITIALS = frozenset("FfTtCcAaLl")
_BYLINE = re.compile(r"^By\s+[A-Z][A-Z.'’\- ]{3,60}$")
_REFERENCE_LIKE = re.compile(r"^\s*(?:[-*•]\s*)?\[\d{1,3}\]\s+\S.{10,}\b(19|20)\d\d\b")
_JOINING = re.compile(r"(\b(of|and|or|for|in|on|with|the|a|an|to|from|by|does|do|is|are|via|vs\.?)|[,;:]|\w[-–—])$", re.IGNORECASE)

_BOILERPLATE = [
    re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?\s*\[[^\]]{2,20}\]\s*\d{1,2}\s*[A-Z][a-z]{2,8}\.?\s*\d{4}$"),
    re.compile(r"^(©|\(c\)\s*(19|20)\d\d|copyright\b)", re.IGNORECASE),
    re.compile(r"all rights reserved|licensed under|creative commons|\bCC[- ]BY\b|permission to make digital", re.IGNORECASE),
    re.compile(r"^(preprint\b\W.{0,60}|preprint|under review\b.{0,80})$", re.IGNORECASE),
]
_STAMP = _BOILERPLATE[0]
_ANY_BOILERPLATE = re.compile("|".join(f"(?:{p.pattern})" for p in _BOILERPLATE), re.IGNORECASE)
# Only at the top or bottom of a page: venue footers and journal headers, page numbers.
_EDGE_BOILERPLATE = [
    re.compile(r"^\d{1,4}$|^page \d+( of \d+)?$|^- ?\d{1,4} ?-$", re.IGNORECASE),
    re.compile(r"^\d+(st|nd|rd|th)\b.{0,40}\b(conference|workshop|symposium)\b", re.IGNORECASE),
    re.compile(r"^(published as|accepted (at|to|in)|to appear in|proceedings of)\b", re.IGNORECASE),
    re.compile(r"\b(NeurIPS|NIPS|ICML|ICLR|ACL|EMNLP|NAACL|COLING|CVPR|ICCV|AAAI|IJCAI|KDD)\s*['’]?\s*\d{2,4}\b"),
    re.compile(r"\bvol\.\s*\d+|\bISSN\b|^doi:|^https?://doi\.org/", re.IGNORECASE),
]
_AFFILIATION = re.compile(r"universit|institut|laborator|college|department|school of|@[\w-]+\.", re.IGNORECASE)
_FIRST_PAGE_CHARS = 4000  # a text file's "first page", where its front matter can sit
EDGE_DEPTH = 3  # lines from either end of a page that may be headers or footers
_TITLE_ZONE_CHARS = 1500  # a title block longer than this is no title block
_ABSTRACT_CHARS = 4000  # an "abstract" that runs on without a heading has ended by here


@dataclass(frozen=True)
class Line:
    """One line of a paper: a PDF layout line or a text paragraph, without its line break."""

    text: str
    page: int | None = None
    md_level: int | None = None  # the number of Markdown '#' marks, for a Markdown heading
    page_edge: bool = False  # among the first or last lines of its page
    run_in: bool = False  # bold words opening a paragraph (fonts.run_in_heads): a heading under the current section


@dataclass(frozen=True)
class Label:
    role: str
    heading: str | None = None  # the section this line opens: its heading text
    depth: int = 1  # nesting of that heading: 1 for "3", 2 for "3.2"


def classify(lines: Sequence[Line], known: Sequence[str] = ()) -> list[Label]:
    """One label per line. `known`: the paper's title, authors and affiliation when curated."""
    return _Classifier(lines, known).run()


def heading_paths(labels: Sequence[Label]) -> list[tuple[str, ...]]:
    """The heading chain (outermost first) each line sits under; a heading line is under itself."""
    stack: list[tuple[int, str]] = []
    out = []
    path: tuple[str, ...] = ()
    for label in labels:
        if label.heading is not None:
            while stack and stack[-1][0] >= label.depth:
                stack.pop()
            stack.append((label.depth, label.heading))
            path = tuple(h for _, h in stack)
        out.append(path)  # one shared tuple per section
    return out


def dominant_role(roles_and_sizes: Sequence[tuple[str, int]]) -> str:
    """The role covering most characters; headings count only when there is nothing else."""
    totals: dict[str, int] = {}
    for role, size in roles_and_sizes:
        totals[role] = totals.get(role, 0) + size
    if not totals:
        return BODY
    content = {r: n for r, n in totals.items() if r != HEADING} or totals
    return max(content, key=lambda r: (content[r], -ROLES.index(r)))


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def _number_key(num: str) -> tuple[int, ...] | None:
    """'3.2' -> (3, 2); 'B.1' -> (2, 1) (letters are appendix numbers)."""
    parts = num.split(".")
    head = parts[0]
    first = ord(head) - ord("A") + 1 if head.isalpha() else int(head)
    return (first, *(int(p) for p in parts[1:]))


def _continues(previous: tuple[int, ...] | None, number: tuple[int, ...]) -> bool:
    """Whether `number` can follow `previous` in a paper's numbering, allowing one missed heading:
    a next sibling at some level (3.2 -> 3.3, 3.2 -> 4) or a first child (3 -> 3.1), deeper
    levels opening at 1 (3.2 -> 4.1)."""
    if previous is None:
        return number[0] <= 2 and all(n == 1 for n in number[1:])
    for k in range(len(previous) + 1):
        if number[:k] != previous[:k] or len(number) <= k:
            continue
        step = number[k] - (previous[k] if k < len(previous) else 0)
        if 1 <= step <= 2 and all(n == 1 for n in number[k + 1 :]):
            return True
    return False


class _Classifier:
    def __init__(self, lines: Sequence[Line], known: Sequence[str]) -> None:
        self.lines = lines
        self.known = {_norm(k) for k in known if k and len(_norm(k)) >= 4}
        self.labels: list[Label] = []
        self.zone = "title"  # title -> abstract -> main <-> references
        self.zone_chars = 0
        self.chars_read = 0
        self.numbers: tuple[int, ...] | None = None  # the last numeric heading
        self.letters: tuple[int, ...] | None = None  # the last appendix (letter) heading
        self.letters_open = False  # letter headings are accepted after references or an appendix
        self.md_min = min((ln.md_level for ln in lines if ln.md_level), default=1)
        self.depth = 0  # depth of the last heading that is no run-in heading

    def run(self) -> list[Label]:
        for i, line in enumerate(self.lines):
            if self._continues_heading(i, line):
                head = self.labels[-1]
                self.labels[-1] = Label(HEADING, f"{head.heading} {line.text.strip()}", head.depth)
                self.labels.append(Label(HEADING))  # the heading's second line: no heading of its own
                continue
            self.labels.append(self._label(i, line))
            self.chars_read += len(line.text)
        self._mark_quoted()
        self._mark_tables()
        self._mark_figures()
        return self.labels

    # --- one line ---------------------------------------------------------------------------

    def _label(self, i: int, line: Line) -> Label:
        text = line.text.strip()
        if self._is_boilerplate(text, line):
            return Label(BOILERPLATE)
        if line.run_in and self.zone in ("main", "abstract") and text:
            # under the current section, not closing it: the next run-in heading replaces it
            return Label(HEADING, text.rstrip(" .:"), self.depth + 1)
        heading = self._heading(i, line, text)
        if heading is not None:
            return heading
        if self.zone == "title" and (self.zone_chars > _TITLE_ZONE_CHARS or (line.page or 1) > 1):
            self.zone = "main"
        if self.zone == "abstract" and self.zone_chars > _ABSTRACT_CHARS:
            self.zone = "main"
        self.zone_chars += len(text)
        if self.zone in ("title", "abstract") and _ABSTRACT_LABEL.match(text):
            return self._open("abstract", Label(FRONT, "Abstract", 1))
        early = line.page == 1 if line.page is not None else self.chars_read <= _FIRST_PAGE_CHARS
        if self.zone in ("title", "abstract") or (early and (_KEYWORDS.match(text) or self._is_known(text, line))):
            return Label(FRONT)
        if "\t" in text:
            return Label(TABLE)
        if text[0] in _CAPTION_INITIALS and _CAPTION.match(text) and not self._runs_on(i):
            return Label(CAPTION)
        if self.zone == "references" or (text[0] in "[-*•" and _REFERENCE_LIKE.match(text)):
            return Label(REFERENCE)
        if self.labels and self.labels[-1].role == CAPTION and self._caption_runs_on(i):
            return Label(CAPTION)
        return Label(BODY)

    def _continues_heading(self, i: int, line: Line) -> bool:
        """A PDF heading broken over two layout lines: the first ends on a joining word, or the
        second is a few lowercase words ending the question the heading asks."""
        if not self.labels or line.page is None or self.labels[-1].heading is None or line.page != self.lines[i - 1].page:
            return False
        if self.lines[i - 1].run_in:
            return False  # the body text that ran on after it
        text, head = line.text.strip(), self.labels[-1].heading
        if len(text.split()) > 6 or len(head) + len(text) > 160 or _NUMBERED.match(text):
            return False
        return bool(_JOINING.search(head)) or (text[:1].islower() and text.endswith("?") and not head.endswith("?"))

    def _is_boilerplate(self, text: str, line: Line) -> bool:
        if len(text) > 250:
            return False
        if self.zone == "references":
            return bool(_STAMP.search(text))  # "In Proceedings of", "preprint arXiv:" are references there
        if _ANY_BOILERPLATE.search(text):
            return True
        return line.page_edge and any(p.search(text) for p in _EDGE_BOILERPLATE)

    def _is_known(self, text: str, line: Line) -> bool:
        """A short line of page 1 (or the start of a text) that repeats the curated title, an
        author or the affiliation, or is an affiliation footnote or an e-mail line."""
        if len(text) > 300 or self.zone == "references":
            return False
        if _AFFILIATION.search(text) and (line.page_edge or "@" in text or re.match(r"^[\d*†‡§¶♠♣♥♦]", text)):
            return True
        norm = _norm(text)
        return any(k in norm or (norm and norm in k and len(norm) > 0.5 * len(k)) for k in self.known)

    def _caption_runs_on(self, i: int) -> bool:
        """A PDF caption wraps over a few layout lines until one ends a sentence."""
        if self.lines[i].page is None:
            return False
        j = i - 1
        n = 0
        while j >= 0 and self.labels[j].role == CAPTION:
            n += 1
            j -= 1
        return n < 6 and not self.lines[i - 1].text.rstrip().endswith((".", ":"))

    # --- headings ---------------------------------------------------------------------------

    def _heading(self, i: int, line: Line, text: str) -> Label | None:
        if not text or len(text) > 160:
            return None
        named = _NAMED_SECTIONS.get(re.sub(r"[\s:.]+$", "", text).lower().replace("*", "").strip()) if len(text) <= 40 else None
        numbered = _NUMBERED.match(text)
        if line.md_level is not None:
            return self._markdown_heading(line, text, named, numbered)
        if named is not None:
            return self._open(named, Label(HEADING, text, 1))
        if self.zone == "references" and _APPENDIX_START.match(text):
            return self._open("appendix", Label(HEADING, text, 1))
        if numbered is None or not self._plausible_title(i, numbered.group("title")):
            return None
        return self._numbered_heading(numbered, text)

    def _markdown_heading(self, line: Line, text: str, named: str | None, numbered) -> Label:
        if named is not None:
            return self._open(named, Label(HEADING, text, 1))
        if numbered is not None and numbered.group("num")[0].isdigit():
            self.numbers = _number_key(numbered.group("num"))
            return self._open("main", Label(HEADING, text, len(self.numbers)))
        if self.zone == "title" and (not self.labels or all(lb.role == FRONT for lb in self.labels)):
            return Label(FRONT)  # the title and author lines some converters mark as headings
        return self._open("main", Label(HEADING, text, line.md_level - self.md_min + 1))

    def _numbered_heading(self, numbered, text: str) -> Label | None:
        num = numbered.group("num")
        key = _number_key(num)
        if num[0].isalpha():
            if not self.letters_open or not _continues(self.letters, key) or (self.letters is None and key[0] != 1):
                return None
            self.letters = key
            return self._open("main", Label(HEADING, text, len(key)))
        title = numbered.group("title")
        named = _NAMED_SECTIONS.get(re.sub(r"[\s:.]+$", "", title).lower())
        if not (named or _continues(self.numbers, key)) or (self.zone == "references" and _looks_cited(title)):
            return None
        self.numbers = key
        return self._open(named or "main", Label(HEADING, text, len(key)))

    def _plausible_title(self, i: int, title: str) -> bool:
        """Short, capitalized, a real word in it, not a sentence, not a table-of-contents line,
        and not the run-on of a broken line."""
        words = title.split()
        if not (1 <= len(words) <= 16) or not title[0].isupper():
            return False
        if not re.search(r"[A-Za-z]{3}", title) or re.search(r"[.!]\s|\.$|\s\d+$", title):
            return False
        if self.lines[i].page is None:
            return True  # a text file's lines are whole paragraphs: the one before has ended
        return not self._runs_on(i)

    def _runs_on(self, i: int) -> bool:
        """Line `i` of a PDF continues the line before ("... are shown in" / "Table 6. In ...")."""
        if i == 0 or self.lines[i].page is None or self.labels[-1].role in (HEADING, BOILERPLATE):
            return False
        return bool(_JOINING.search(self.lines[i - 1].text.rstrip()))

    def _open(self, zone: str, label: Label) -> Label:
        if label.heading is not None:
            self.depth = label.depth
        if zone == "appendix":
            zone = "main"
            self.letters_open = True
        if zone == "references":
            self.letters_open = True
            self.letters = None
        if zone == "abstract" and self.zone not in ("title", "abstract"):
            zone = "main"  # an "Abstract" after the body is some section's own name
        self.zone = zone
        self.zone_chars = 0
        return label

    # --- passes over the whole paper ----------------------------------------------------------

    def _mark_quoted(self) -> None:
        """Text of a figure that reprints another text: from the line its caption repeats (or a
        byline) to the caption, within one section."""
        labels = self.labels
        for i, label in enumerate(labels):
            if label.role == CAPTION and (i == 0 or labels[i - 1].role != CAPTION):
                title = _norm(re.sub(_CAPTION, "", self.lines[i].text.strip(), count=1))
                start = self._echo(i, title) if len(title) >= 12 else None
                if start is not None:
                    self._relabel(start, i)
            if label.role == BODY and _BYLINE.match(self.lines[i].text.strip()):
                start = i
                while start > 0 and i - start < 3 and labels[start - 1].role == BODY and len(self.lines[start - 1].text) < 80:
                    start -= 1
                end = i
                while end < len(labels) and labels[end].role not in (CAPTION, HEADING):
                    end += 1
                self._relabel(start, end)

    def _echo(self, caption: int, title: str) -> int | None:
        for j in range(caption - 1, max(-1, caption - 200), -1):
            if self.labels[j].heading is not None:
                return None
            if _norm(self.lines[j].text) == title:
                return j
        return None

    def _relabel(self, start: int, end: int) -> None:
        for j in range(start, end):
            if self.labels[j].role in (BODY, TABLE):
                self.labels[j] = Label(QUOTED)

    def _mark_tables(self) -> None:
        """PDF tables lose their tabs: rows of mostly numbers, and the short lines between them."""
        rows = [lb.role == BODY and ln.page is not None and _numeric_row(ln.text) for ln, lb in zip(self.lines, self.labels)]
        for i, is_row in enumerate(rows):
            if is_row:
                self.labels[i] = Label(TABLE)
        last = None
        for i, label in enumerate(self.labels):
            if label.role != TABLE:
                continue
            if last is not None and 1 < i - last <= 3 and all(
                self.labels[j].role == BODY and len(self.lines[j].text) <= 60 and not self.lines[j].text.rstrip().endswith(".")
                for j in range(last + 1, i)
            ):
                for j in range(last + 1, i):
                    self.labels[j] = Label(TABLE)
            last = i

    def _mark_figures(self) -> None:
        """Runs of at least three short body lines of a PDF, less a paragraph's last line that
        opens the run ("... and the results." / "score significantly.")."""
        run: list[int] = []
        for i, (line, label) in enumerate([*zip(self.lines, self.labels), (Line("", None), Label(BODY))]):
            if label.role == BODY and line.page is not None and len(line.text) <= _FIGURE_LINE_CHARS:
                run.append(i)
                continue
            while run and (self.lines[run[0]].text[:1].islower() or self.lines[run[0]].text.rstrip().endswith(".")):
                run.pop(0)
            if len(run) >= 3:
                for j in run:
                    self.labels[j] = Label(FIGURE)
            run = []


_NUMERIC_TOKEN = re.compile(r"(?<!\S)(?:[-–+±]?\(?[\d.,/]+%?\)?[*†‡]?|[-–—]|\d+(?:\.\d+)?[kKMB])(?!\S)")


_FIGURE_LINE_CHARS = 25  # a column of body text is 45-90 characters a line


def _numeric_row(text: str) -> bool:
    """At least half the tokens (two or more) are numbers, ranges or dashes."""
    if len(text) > 160:
        return False
    tokens = text.count(" ") + 1
    if tokens < 3:
        return False
    numeric = len(_NUMERIC_TOKEN.findall(text))
    return numeric >= 2 and numeric >= 0.5 * tokens


def _looks_cited(title: str) -> bool:
    return bool(re.search(r"\b(19|20)\d\d\b|et al|,.*,", title))
