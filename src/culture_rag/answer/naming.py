"""Which papers a question names: by file name, by a short name ("BERT", "HellaSwag"), by
its authors' surnames ("Shang and Liu"), by its title written out, or, after a cue such as "the
paper on", by the rarer words of its title; and the question without those names once a search
is scoped to them.

Plain rules over the index's paper metadata (titles, authors, file names): nothing here knows
any particular paper. Names are matched as whole tokens (words.tokens), title words as the
keyword index sees them (lexical.content_words).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from culture_rag.answer.words import CUE_WORDS, INTENT_WORDS, QUESTION_WORDS, TOKEN, Token, tokens as question_tokens
from culture_rag.index.lexical import content_words
from culture_rag.types import PaperInfo

# A paper named in the singular: "the paper on ...", "Mao's study". Title words alone name a
# paper only with one of these, since a topical question shares words with titles anyway.
_CUE = re.compile(r"\b(paper|study|article|report|publication|preprint|work|et al)\b", re.I)
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
_QUOTES = "\"“”'‘’«»"
# A run of the question's words is a title written out when it holds this share of the title's
# words: a title quoted loosely, cut short or stored with a subtitle is still the title, while a
# question that shares a few of its words ("what does the adaptation rely on") is not.
TITLE_SHARE = 0.6


def title_span(question: str, title: str) -> tuple[int, int, float] | None:
    """Where `title` is written out in `question`: the longest run of words all from the title,
    with the quotes around it, and the share of the title's words it holds; None when the run
    holds less than TITLE_SHARE of them (or fewer than three)."""
    return _span(question, list(_WORD.finditer(question)), _title_words(title))


@lru_cache(maxsize=1 << 16)
def _title_words(title: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(title))


def _span(question: str, words: list[re.Match], title_words: frozenset[str]) -> tuple[int, int, float] | None:
    """title_span over the question's words, found once by the caller for every title it tries."""
    if len(title_words) < 3:
        return None
    best: tuple[int, int, int] | None = None  # first word, past the last, distinct title words
    start = 0
    for i in range(len(words) + 1):
        if i < len(words) and words[i].group().lower() in title_words:
            continue
        held = len({m.group().lower() for m in words[start:i]})
        if held >= max(3, TITLE_SHARE * len(title_words)) and (best is None or held > best[2]):
            best = (start, i, held)
        start = i + 1
    if best is None:
        return None
    begin, end = words[best[0]].start(), words[best[1] - 1].end()
    while begin > 0 and (question[begin - 1] in _QUOTES or question[begin - 1].isspace()):
        begin -= 1
    while end < len(question) and question[end] in _QUOTES:
        end += 1
    return begin, end, best[2] / len(title_words)


def _coined(word: str) -> bool:
    """BERT, CodeNet, GPT-3: a capital or a digit past the first letter."""
    return bool(re.search(r"[A-Z0-9]", word[1:]))


@dataclass(frozen=True)
class _Names:
    """What a paper may be called in a question."""

    paper_id: str
    short: frozenset[str]  # lowercase short names: "bert" for "BERT: Pre-training of ..."
    exact_case: frozenset[str]  # short names that are all capitals in the title (must be capitals in the question)
    surnames: frozenset[str]  # lowercase
    title_terms: frozenset[str]  # stemmed content words of the title
    title: str = ""


@lru_cache(maxsize=1 << 16)
def _names(paper: PaperInfo) -> _Names:
    short: set[str] = set()
    exact: set[str] = set()
    lead = re.split(r"\s*[:,—–]\s*|\s+-\s+", paper.title.strip(), maxsplit=1)[0]
    # A title's lead is its short name when it is a coined word ("HellaSwag: Can a Machine
    # ..."), not when it is plain words ("Deep Learning: A Review").
    candidates = [lead] if len(lead.split()) <= 3 and any(_coined(w) for w in lead.split()) else []
    candidates += re.findall(r"\(([A-Za-z][\w-]{1,20})\)", paper.title)  # "... Transformers (BERT)"
    # A one-word file name ("bert.pdf") is a short name when the title spells it as a coined
    # word; "survey.pdf" for "A Survey of ..." is not ("what survey methods" names no file).
    stem_tokens = TOKEN.findall(Path(paper.source).stem)
    if len(stem_tokens) == 1:
        candidates += [w for w in TOKEN.findall(paper.title) if w.lower() == stem_tokens[0].lower() and _coined(w)]
    for name in candidates:
        key = " ".join(t.lower() for t in TOKEN.findall(name))
        if key and key not in QUESTION_WORDS and key not in CUE_WORDS and content_words(key):
            short.add(key)
            if name.isupper() and name.isalpha():
                exact.add(key)
    return _Names(
        paper_id=paper.paper_id,
        short=frozenset(short),
        exact_case=frozenset(exact),
        surnames=frozenset(filter(None, (_surname(a) for a in paper.authors))),
        title_terms=frozenset(content_words(paper.title)) - frozenset(content_words(" ".join(INTENT_WORDS | CUE_WORDS))),
        title=paper.title,
    )


_SUFFIXES = frozenset("jr sr ii iii iv phd md".split())


def _surname(author: str) -> str | None:
    """"Huixia Shang" -> "shang"; "Shang, Huixia" -> "shang"; initials and suffixes skipped."""
    name = author.split(",")[0] if "," in author else author
    tokens = [t for t in TOKEN.findall(name) if len(t) > 1 and t.lower() not in _SUFFIXES]
    return tokens[-1].lower() if tokens else None


@dataclass(frozen=True)
class Reference:
    """The papers a question names and the words that named them."""

    papers: tuple[str, ...]
    tokens: frozenset[int]  # positions (in the token list) of the words that named them
    names: tuple[str, ...]  # the names as written, in question order
    author_names: tuple[str, ...] = ()  # those of them that are surnames


def resolve_papers(question: str, papers: Sequence[PaperInfo]) -> Reference:
    """The papers a question names, when it names them unambiguously.

    Evidence per paper: its file named (weighted 3), a short name (3), a surname (1), each
    divided by how many papers share that name ("Liu" alone names neither of two papers with
    a Liu among their authors; "Shang and Liu" names the one with both). A paper is named at
    weight 1 or more. Only when no paper is named so, title words name one: after a singular
    cue such as "the paper on", at least two of its rarer title words, more than any other
    paper has. Names are looked up from the question's words, so a question costs about the
    same whatever the size of the library."""
    tokens = question_tokens(question)
    lookup = _lookup(tuple(papers))
    names = lookup.names
    lowercase_question = not any(ch.isupper() for ch in question)
    scores: Counter[int] = Counter()
    used: dict[int, set[int]] = {}

    def credit(owners: list[int], weight: float, positions: set[int]) -> None:
        for owner in owners:
            scores[owner] += weight / len(owners)
            used.setdefault(owner, set()).update(positions)

    lowered = question.lower()
    for found in re.finditer(r"[\w.-]+", lowered):  # the file itself: "in bert.pdf", or its id
        owners = lookup.files.get(found.group().strip(".-"))
        if owners:
            credit(owners, 3.0, {i for i, t in enumerate(tokens) if found.start() <= t.start < found.end()})
    for i, n, key, owners in _most_specific(_short_matches(tokens, lookup, names, lowercase_question)):
        credit(owners, 3.0 * len(owners) / len(lookup.short[key]), set(range(i, i + n)))
    surnames = set()
    for i, token in enumerate(tokens):
        if token.lower in lookup.surnames and _name_cased(tokens, i, question, lowercase_question):
            credit(lookup.surnames[token.lower], 1.0, {i})
            surnames.add(i)
    chosen = sorted(o for o, score in scores.items() if score >= 1.0)
    if not chosen:
        stems = [content_words(t.lower) for t in tokens]  # as the keyword index sees them
        return _by_full_title(question, tokens, stems, lookup) or _by_title(question, tokens, stems, lookup)
    # The words that named the chosen papers, which the topic leaves out.
    positions = frozenset(i for o in chosen for i in used[o])
    return Reference(
        tuple(names[o].paper_id for o in chosen), positions, tuple(tokens[i].text for i in sorted(positions)),
        tuple(dict.fromkeys(tokens[i].text for i in sorted(positions & surnames))),
    )


@dataclass(frozen=True)
class _Lookup:
    """A library's papers by each name they go by (positions in the library)."""

    names: tuple[_Names, ...]
    files: dict[str, list[int]]
    short: dict[str, list[int]]
    surnames: dict[str, list[int]]
    title_terms: dict[str, list[int]]


def library_surnames(papers: Sequence[PaperInfo]) -> frozenset[str]:
    """The lowercase surnames of the library's authors, as questions may name them."""
    return frozenset(_lookup(tuple(papers)).surnames)


@lru_cache(maxsize=4)
def _lookup(papers: tuple[PaperInfo, ...]) -> _Lookup:
    """Built once per library: a question then looks its words up (at 13k papers, building
    this per question cost 150 ms; looking up costs well under one)."""
    names = tuple(_names(p) for p in papers)
    files: dict[str, list[int]] = {}
    short: dict[str, list[int]] = {}
    surnames: dict[str, list[int]] = {}
    title_terms: dict[str, list[int]] = {}
    for number, (paper, ns) in enumerate(zip(papers, names)):
        # a plain-word id ("race" for race.pdf) is left to the short-name rules, which mind case
        for name in {paper.source.lower(), "" if paper.paper_id.isalpha() else paper.paper_id}:
            if name:
                files.setdefault(name, []).append(number)
        for key in ns.short:
            short.setdefault(key, []).append(number)
        for key in ns.surnames:
            surnames.setdefault(key, []).append(number)
        for key in ns.title_terms:
            title_terms.setdefault(key, []).append(number)
    return _Lookup(names, files, short, surnames, title_terms)


def _short_matches(tokens: list[Token], lookup: _Lookup, names: list[_Names], lowercase_question: bool):
    for i in range(len(tokens)):
        for n in range(1, min(3, len(tokens) - i) + 1):
            window = tokens[i : i + n]
            key = " ".join(t.lower for t in window)
            owners = [o for o in lookup.short.get(key, ()) if _cased(window, key, names[o], lowercase_question)]
            if owners:
                yield i, n, key, owners


def _most_specific(matches) -> list:
    """Matches not inside a longer one: "GPT 3" names GPT-3's paper, not also GPT's."""
    matches = list(matches)
    return [m for m in matches if not any(o is not m and o[0] <= m[0] and m[0] + m[1] <= o[0] + o[1] and o[1] > m[1] for o in matches)]


def _cased(window: list[Token], key: str, ns: _Names, lowercase_question: bool) -> bool:
    """An all-capitals short name is written in capitals: "PAL" the paper, not "pal" the word."""
    return key not in ns.exact_case or lowercase_question or all(t.text.isupper() for t in window)


def _name_cased(tokens: list[Token], i: int, question: str, lowercase_question: bool) -> bool:
    """A surname is written capitalized ("how long" is no reference to a Long). The first word
    is capitalized anyway: it counts as a name when it reads as one ("Mao's", "Sanh et al.",
    "Shang and Liu")."""
    token = tokens[i]
    if lowercase_question or token.text.isupper():
        return True
    if not token.text[:1].isupper():
        return False
    if not token.first:
        return True
    after = question[token.start + len(token.text) : token.start + len(token.text) + 1]
    following = [t.text for t in tokens[i + 1 : i + 3]]
    return after in ("'", "’") or following == ["et", "al"] or (
        len(following) == 2 and following[0] in ("and", "&") and following[1][:1].isupper()
    )


def _by_full_title(question: str, tokens: list[Token], stems: list[list[str]], lookup: _Lookup) -> Reference | None:
    """The paper whose title the question writes out (title_span), when no other paper's title
    is written out as fully. Only papers sharing two or more title words with the question are
    tried, found through the title-word lookup, so the cost does not grow with the library."""
    shared: Counter[int] = Counter()
    for term in {s for ss in stems for s in ss}:
        shared.update(lookup.title_terms.get(term, ()))
    words = list(_WORD.finditer(question))
    found = []
    for owner, n in shared.items():
        if n >= 2 and (span := _span(question, words, _title_words(lookup.names[owner].title))) is not None:
            found.append((span[2], owner, span))
    if not found:
        return None
    found.sort(key=lambda f: (-f[0], f[1]))
    if len(found) > 1 and found[1][0] == found[0][0]:
        return None  # two papers' titles written out as fully: the question names neither
    _, owner, (begin, end, _) = found[0]
    positions = frozenset(i for i, t in enumerate(tokens) if begin <= t.start < end)
    return Reference((lookup.names[owner].paper_id,), positions, tuple(tokens[i].text for i in sorted(positions)))


def _by_title(question: str, tokens: list[Token], stems: list[list[str]], lookup: _Lookup) -> Reference:
    none = Reference((), frozenset(), ())
    n_papers = len(lookup.names)
    if not _CUE.search(question) or not n_papers:
        return none
    rare = max(1.0, 0.25 * n_papers)  # a word in most titles names none of them
    matched: dict[int, set[str]] = {}
    for term in {s for ss in stems for s in ss}:
        owners = lookup.title_terms.get(term, ())
        if 0 < len(owners) <= rare:
            for owner in owners:
                matched.setdefault(owner, set()).add(term)
    if not matched:
        return none

    def weight(owner: int) -> float:
        return sum(math.log(n_papers / len(lookup.title_terms[t])) for t in matched[owner])

    ranked = sorted(matched, key=lambda o: (-weight(o), o))
    best = ranked[0]
    runner_up = len(matched[ranked[1]]) if len(ranked) > 1 else 0
    if len(matched[best]) < 2 or len(matched[best]) <= runner_up:
        return none
    positions = frozenset(i for i, ss in enumerate(stems) if set(ss) & matched[best])
    return Reference((lookup.names[best].paper_id,), positions, tuple(tokens[i].text for i in sorted(positions)))


def without_names(text: str, names: Sequence[str]) -> str:
    """`text` without the surnames that named its papers: once a search is scoped to those
    papers they say nothing more, and matched as words they find namesakes ("Mao's paper"
    would rank a quote of Mao Zedong first)."""
    for name in names:
        text = re.sub(r"\b" + re.escape(name) + r"(['’]s)?\b", " ", text)
    return re.sub(r"\s+", " ", text).strip()
