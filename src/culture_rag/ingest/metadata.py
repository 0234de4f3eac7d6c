"""A paper's bibliographic metadata: what the corpus's papers.toml says, what the paper itself
says (its PDF metadata, and its first page's title, authors, DOI, arXiv identifier and year),
and how the two combine (papers.toml wins, field by field).

The PDF's /Info dates are not used for the year: they are the file's, not the paper's (a
re-saved or scanned copy carries the day it was saved), so a wrong year would silently misfile
a paper under a year filter. A year comes from papers.toml or from the paper's own words.
"""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path

from culture_rag.errors import IngestError
from culture_rag.types import PaperMeta

METADATA_FILE = "papers.toml"
# papers.toml's keys; "arxiv" is PaperMeta.arxiv_id
KEYS = ("title", "authors", "year", "doi", "affiliation", "venue", "url", "arxiv")


# --- papers.toml ---------------------------------------------------------------------------


def read_metadata_file(folder: Path) -> dict[str, PaperMeta]:
    """The curated entries of `folder/papers.toml`, by file name. A value of the wrong kind is an
    IngestError naming the file, the entry and the key."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(path, "metadata", f"cannot read the metadata file: {exc}") from exc
    return {name: _entry(path, name, entry) for name, entry in raw.items() if isinstance(entry, dict)}


def _entry(path: Path, name: str, entry: dict) -> PaperMeta:
    def bad(key: str, what: str) -> IngestError:
        return IngestError(path, "metadata", f"[{name!r}] {key}: {what}; fix it in {METADATA_FILE}")

    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise bad(unknown[0], f"unknown key; the keys are {', '.join(KEYS)}")
    values: dict = {}
    for key in ("title", "venue"):
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise bad(key, "must be a non-empty string")
            values[key] = entry[key].strip()
    if "authors" in entry:
        authors = [entry["authors"]] if isinstance(entry["authors"], str) else entry["authors"]
        if not isinstance(authors, list) or not all(isinstance(a, str) and a.strip() for a in authors):
            raise bad("authors", 'must be a list of names, such as ["Ada Lovelace", "Alan Turing"]')
        values["authors"] = tuple(a.strip() for a in authors)
    if "affiliation" in entry:
        affiliation = entry["affiliation"]
        if isinstance(affiliation, list) and all(isinstance(a, str) for a in affiliation):
            affiliation = "; ".join(affiliation)
        if not isinstance(affiliation, str):
            raise bad("affiliation", "must be a string or a list of strings")
        values["affiliation"] = affiliation
    if "year" in entry:
        year = entry["year"]
        if isinstance(year, bool) or not isinstance(year, int) or not plausible_year(year):
            raise bad("year", f"must be a year as a whole number, such as 2019 (not {year!r})")
        values["year"] = year
    if "doi" in entry:
        doi = normalize_doi(entry["doi"]) if isinstance(entry["doi"], str) else None
        if doi is None:
            raise bad("doi", f"must be a DOI such as 10.1234/abc.5678 (not {entry['doi']!r})")
        values["doi"] = doi
    if "arxiv" in entry:
        arxiv = normalize_arxiv(entry["arxiv"]) if isinstance(entry["arxiv"], str) else None
        if arxiv is None:
            raise bad("arxiv", f"must be an arXiv identifier such as 1810.04805 (not {entry['arxiv']!r})")
        values["arxiv_id"] = arxiv
    if "url" in entry:
        if not (isinstance(entry["url"], str) and re.fullmatch(r"https?://\S+", entry["url"].strip())):
            raise bad("url", "must be an http:// or https:// address")
        values["url"] = entry["url"].strip()
    return PaperMeta(**values)


def plausible_year(year: int) -> bool:
    return 1500 <= year <= time.gmtime().tm_year + 1


_DOI = re.compile(r"10\.\d{4,9}/[^\s\"'<>]+")
_DOI_PREFIX = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)", re.IGNORECASE)


def normalize_doi(text: str) -> str | None:
    """A bare DOI (DOIs are case-insensitive: lower case) from a DOI, doi: form or doi.org link."""
    doi = _DOI_PREFIX.sub("", text.strip())
    return doi.lower() if _DOI.fullmatch(doi) else None


_ARXIV_NEW = r"\d{4}\.\d{4,5}"
_ARXIV_OLD = r"[a-z][a-z.-]+/\d{7}"  # hep-th/9901001, before 2007
_ARXIV = re.compile(rf"(?:arxiv:\s*)?({_ARXIV_NEW}|{_ARXIV_OLD})(?:v\d+)?", re.IGNORECASE)


def normalize_arxiv(text: str) -> str | None:
    found = _ARXIV.fullmatch(text.strip())
    return found.group(1) if found else None


def arxiv_year(arxiv_id: str) -> int | None:
    """The year of an identifier's first version: YYMM.NNNNN (2007 on) or archive/YYMMNNN."""
    digits = arxiv_id.rsplit("/", 1)[-1]
    yy = int(digits[:2])
    year = (2000 if "/" not in arxiv_id or yy < 91 else 1900) + yy
    return year if plausible_year(year) else None


# --- the front matter ------------------------------------------------------------------------

# arXiv stamps its listing into the margin of page one: "arXiv:1810.04805v2 [cs.CL] 24 May 2019".
# A bare identifier elsewhere on the page is usually a citation of another paper.
_ARXIV_STAMP = re.compile(rf"arXiv:\s*({_ARXIV_NEW}|{_ARXIV_OLD})(?:v\d+)?\s*\[[A-Za-z.-]+\]")
# A line that is only an identifier ("arXiv: <id>" under a Markdown title) names the paper
# itself, as a stamp does; run into the title line above it, it made titles end in "arXiv: ...".
_ARXIV_LINE = re.compile(rf"^\s*arXiv:\s*({_ARXIV_NEW}|{_ARXIV_OLD})(?:v\d+)?\s*$", re.IGNORECASE)
# "(Smith, 2015)" is a citation; "Journal of Econometrics 210 (2019) 1-20" is a journal's header.
_CITATION_LINE = re.compile(
    r"\bet al\b|\([^()]*[^\W\d_][^()]*?\s(?:19|20)\d\d[a-z]?\)|^\s*\[\d+\]|\barXiv preprint\b", re.IGNORECASE
)
_YEAR = r"((?:1[5-9]|20)\d\d)\b"
# Lines that state where and when the paper itself appeared.
_PUBLICATION_YEAR = (
    re.compile(rf"(?:©|\(c\)|\bcopyright\b)\D{{0,30}}?{_YEAR}", re.IGNORECASE),
    re.compile(
        rf"\b(?:proceedings|conference|workshop|symposium|published|accepted|appeared|to appear|journal|transactions)\b"
        rf".{{0,150}}?\b{_YEAR}",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b(?:NeurIPS|NIPS|ICML|ICLR|ACL|EMNLP|NAACL(?:-HLT)?|EACL|COLING|LREC|CVPR|ICCV|ECCV|AAAI|IJCAI|KDD|SIGIR|"
        rf"AISTATS|UAI|COLT|ICASSP|Interspeech)\s*['’]?\s*{_YEAR}"
    ),
)
FRONT_CHARS = 4000  # of a text file, the part that plays the first page (a PDF's is its page one)


def front_metadata(first_page: str) -> PaperMeta:
    """DOI, arXiv identifier and year as the paper's first page states them. The year is that of
    a publication line (copyright, proceedings, journal, a venue and its year), else that of the
    arXiv identifier's first version."""
    lines = [ln for ln in first_page.split("\n") if ln.strip() and not _CITATION_LINE.search(ln)]
    doi = next((d for ln in lines for d in (_first_doi(ln),) if d), None)
    stamp = next((m.group(1) for ln in lines for m in (_ARXIV_STAMP.search(ln) or _ARXIV_LINE.search(ln),) if m), None)
    year = next((y for ln in lines for y in (_publication_year(ln),) if y), None)
    if year is None and stamp:
        year = arxiv_year(stamp)
    return PaperMeta(year=year, doi=doi, arxiv_id=stamp)


def _first_doi(line: str) -> str | None:
    found = _DOI.search(line)
    return normalize_doi(found.group(0).rstrip(".,;:)]}")) if found else None


def _publication_year(line: str) -> int | None:
    for pattern in _PUBLICATION_YEAR:
        for found in pattern.finditer(line):
            year = int(found.group(1))
            if plausible_year(year):
                return year
    return None


# --- title and authors -------------------------------------------------------------------------


def found_metadata(pdf: PaperMeta, text: str) -> PaperMeta:
    """What the file says: PDF metadata (title, authors), then the first page (title, authors,
    DOI, arXiv identifier, year). A curated entry (papers.toml) goes over it (PaperMeta.over)."""
    guess_title, guess_authors = _first_page_guess(text)
    return pdf.over(PaperMeta(title=guess_title, authors=guess_authors)).over(front_metadata(text))


# Lines on a first page that are about the paper, not its title: the venue, a preprint notice, a
# page or line number, an address.
_NOT_TITLE = re.compile(
    r"\b(?:preprint|under review|draft|technical report|page \d+|vol(?:ume)?\.? ?\d+|pp\.|issn|doi)\b|https?://|www\.|@",
    re.IGNORECASE,
)


def not_a_title(line: str) -> bool:
    """An arXiv stamp, a journal header or a running head ("Published as a conference paper at
    ICLR 2020"): a line that states where the paper appeared is never its title."""
    return bool(
        _ARXIV_STAMP.search(line) or _ARXIV_LINE.search(line) or _NOT_TITLE.search(line) or any(p.search(line) for p in _PUBLICATION_YEAR)
    )


def _first_page_guess(text: str) -> tuple[str, tuple[str, ...]]:
    lines = [ln.strip() for ln in text[:3000].split("\n") if ln.strip() and not not_a_title(ln)][:8]
    if not lines:
        return "Untitled", ()
    start = next((i for i, ln in enumerate(lines) if 2 <= len(ln.split()) <= 30), None)
    if start is None:  # line numbers, a lone word: nothing here reads as a title
        return "Untitled", ()
    title, rest = lines[start], lines[start + 1 :]
    # A title broken over two lines: the first ends on a joining word or the second runs on.
    if rest and len(title) + len(rest[0]) < 250 and (
        re.search(r"(\b(for|of|and|in|on|with|the|a|to)|[:,])$", title, re.IGNORECASE) or rest[0][:1].islower()
    ):
        title, rest = f"{title} {rest[0]}", rest[1:]
    return title[:300], _author_names(rest[0]) if rest else ()


def _author_names(line: str) -> tuple[str, ...]:
    if len(line) > 200 or re.search(r"abstract|universit|institut|@|http", line, re.IGNORECASE):
        return ()
    line = re.sub(r"[\d∗*†‡§¶♠♣♥♦]+", " ", line)
    names = [n.strip() for n in re.split(r",|;|\band\b|\s{2,}", line) if n.strip()]
    if names and all(2 <= len(n.split()) <= 4 and n[:1].isupper() for n in names):
        return tuple(names)
    return ()
