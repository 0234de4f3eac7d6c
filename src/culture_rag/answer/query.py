"""Understanding a question before retrieval: which papers it names, what kind of answer it
asks for, which parts of a paper hold that answer, and which script it is written in.

Plain rules over the index's paper metadata (titles, authors, file names): nothing here knows
any particular paper. Words are compared as the keyword index sees them (lexical.content_words:
bm25s's stop words, PyStemmer's English stemmer), names as whole tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from pathlib import Path

from culture_rag.types import PaperInfo
from culture_rag.index.lexical import content_words

INTENTS = (
    "fact", "conclusion", "method", "contribution", "limitations", "future", "authors", "list", "summary", "comparison"
)
FRONT_MATTER = "front matter"  # title, authors, affiliations, abstract, keywords

# Heading words each intent looks for in a paper. list and summary name no fixed heading: they
# take the headings that match the question's topic (match_headings).
SECTIONS: dict[str, tuple[str, ...]] = {
    "fact": (),
    "conclusion": ("conclusion", "findings", "discussion", "results"),
    "method": ("method", "methodology", "approach", "design", "data collection", "construction", "framework"),
    "contribution": ("abstract", "introduction", "conclusion"),
    # Only a section of their own: a conclusion that states no limits is not an answer.
    "limitations": ("limitations", "limitation", "threats to validity", "shortcomings"),
    "future": ("future work", "future directions", "future research", "outlook", "open problems"),
    "authors": (FRONT_MATTER,),
    "list": (),
    "summary": (),
    "comparison": (),
}
# A summary of a whole paper ("summarize the X paper"), with no topic of its own.
WHOLE_PAPER = ("abstract", "introduction", "conclusion")


@dataclass(frozen=True)
class QueryPlan:
    question: str
    papers: tuple[str, ...]  # paper ids the question names, in library order; () for the whole library
    intent: str  # one of INTENTS
    sections: tuple[str, ...]  # heading words where the answer is expected
    topic: str  # the question without its paper references, question and intent words
    comparison_sides: tuple[str, ...] = ()  # ("Belarus", "China") for "how does Belarus compare with China?"
    names: tuple[str, ...] = ()  # the words, as written, that named `papers` ("BERT", "Shang", "Liu")
    author_names: tuple[str, ...] = ()  # those that are surnames ("Mao" in "Mao's paper")
    wants_number: bool = False  # "how many ...?", "what percentage ...?": the answer holds a figure
    defines: str = ""  # "What is knowledge distillation?" -> "knowledge distillation"
    listed: str = ""  # the plural noun a list asks for: "challenges" in "what are the main challenges ...?"
    section_ref: str = ""  # a section the question names: "3.2" ("section 3.2"), "introduction"
    caption_ref: str = ""  # a table or figure the question names: "table 2", "figure 3"
    language: str = "en"  # "en", "zh", "ru", ... by script

    @property
    def topic_words(self) -> list[str]:
        """The topic's stemmed content words, as the keyword index sees them."""
        return content_words(self.topic)


# --- intents -------------------------------------------------------------------------------

_VERBS_OF_MAKING = (
    "built|build|constructed|construct|created|create|collected|collect|made|make|trained|train|done|designed|design"
    "|conducted|conduct|evaluated|evaluate|measured|measure|obtained|obtain|gathered|gather|annotated|annotate"
    "|generated|generate|developed|develop|implemented|implement|tested|test|computed|compute|selected|select"
    "|filtered|filter|carried out|performed|perform|assessed|assess|sampled|sample"
)
# First rule that matches wins; the order settles overlaps ("compare the results" is a
# comparison, "what are the main contributions" a contribution rather than a list).
_INTENT_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (intent, re.compile(pattern, re.I))
    for intent, pattern in (
        ("comparison", r"\bcompar(e|es|ed|ing|ison|isons)\b|\bversus\b|\bvs\b\.?|\bdiffer(s|ed|ing|ence|ences)?\b"
         r"|\bcontrast(s|ed)?\b|\bsimilarit(y|ies)\b"),
        ("summary", r"\bsummar(y|ies|ise|ize|ised|ized|ising|izing)\b|\boverview\b|\bgist\b|\b(main|key|core|central|basic) ideas?\b|\bnutshell\b"
         r"|\bwhat(\s+is|\s+was|'s|’s)\b.{0,80}\babout\s*[?.!]*\s*$"
         r"|\bwhat (does|do|did)\b.{0,60}\b(say|tell|reveal|show) about\b"),
        ("contribution", r"\bcontribut(e|es|ed|ion|ions)\b|\bwhat(\s+is|'s|’s) new\b|\bnovel(ty)?\b"
         r"|\bwhat (does|do|did)\b.{0,60}\bpropose\b"),
        ("limitations", r"\blimitations?\b|\bshortcomings?\b|\bcaveats?\b|\bthreats? to (the )?validity\b"),
        ("future", r"\bfuture (work|works|research|directions?|studies|study)\b|\bnext steps?\b|\bopen (problems|questions)\b"),
        ("conclusion", r"\bconclu(de|des|ded|sion|sions)\b|\bfindings?\b|\bresults?\b|\boutcomes?\b|\btakeaways?\b"
         r"|\bwhat (did|do|does)\b.{0,60}\b(find|show)\b"),
        ("authors", r"\bwho\b.{0,40}\b(wrote|write|writes|written|authored|authors?|published)\b"
         r"|^(?!.*\b(do|does|did|have|has|had|would|could|will)\s+(the\s+)?authors?\b).*\bauthors? (of|behind)\b"
         r"|\b(names?|list) of (the )?authors\b|\baffiliat\w*|\bauthorship\b|\bwritten by\b"
         r"|\bwhere (do|does|did)\b.{0,40}\bwork\b"
         r"|\b(which|what) (university|universities|institutions?|institutes?|organi[sz]ations?|labs?|compan(y|ies))\b"),
        ("method", r"\bmethod(s|ology|ologies|ological)?\b|\bapproach(es)?\b|\bprocedures?\b|\bdata collection\b"
         r"|\bexperimental (setup|design)\b|\bhow (was|were|is|are|did|do|does)\b.{0,80}\b(" + _VERBS_OF_MAKING + r")\b"
         r"|^\s*how (does|do|did)\b(?!.{0,60}\b(affect|affects|influence|influences|impact|impacts|shape|shapes|change"
         r"|changes|benefit|benefits|help|helps|hurt|hurts|contribute|contributes|relate|relates|matter|matters)\b)"),
        ("list", r"\blist\b|\benumerate\b|\bname (the|some|all)\b|\b(what|which) (kinds?|types?|sorts?) of\b"
         r"|\bin what ways\b|^\s*how (can|could|should|might)\b"),
    )
)
_WH = re.compile(
    r"\b(what|which)\s+((?:are|were|is|was|the|main|key|major|specific|different|other|possible|most|important)\s+)*"
    r"([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?(?:\s+([a-z][a-z-]*))?\b",
    re.I,
)
_AUXILIARIES = frozenset("do does did is are was were can could will would should have has had of in for to".split())
_NOT_PLURAL_NOUNS = frozenset("does is was has this its us as whose always perhaps thus".split())


_PART = re.compile(r"(?:,\s*|\s+)and\s+(?=(?:how|what|which|who|whom|where|when|why|whose)\b)", re.I)


_WH_WORDS = re.compile(r"\b(what|which|who|whom|whose|where|when|why|how|did|does|do|is|are|was|were|go|goes|went)\b", re.I)


def question_parts(question: str) -> tuple[str, ...]:
    """The questions a compound question asks ("How was X built, and how do models score on
    it?"): each part deserves its own evidence. A single question is one part."""
    parts = [p.strip(" ,?") for p in _PART.split(question)]
    meaningful = tuple(p for p in parts if len(content_words(_WH_WORDS.sub(" ", p))) >= 2)  # "where did it go" names nothing
    return meaningful if len(parts) > 1 and len(meaningful) == len(parts) else (question,)


def detect_intent(question: str) -> str:
    for intent, rule in _INTENT_RULES:
        if rule.search(question):
            return intent
    if listed_noun(question):
        return "list"
    return "fact"


def listed_noun(question: str) -> str:
    """The plural noun a question asks for ("challenges" in "what are the main challenges
    ..."), or "": "what strategies ...", "which risks ..." ask for several things."""
    for match in _WH.finditer(question):
        for word in match.groups()[2:]:  # a noun phrase of up to three words: "which export markets do"
            if word is None or word.lower() in _AUXILIARIES:
                break
            head = word.lower()
            if head.endswith("s") and not head.endswith(("ss", "us")) and head not in _NOT_PLURAL_NOUNS:
                return head
    return ""


# --- language ------------------------------------------------------------------------------

# Unicode blocks of the scripts a question may be written in, and the language a script
# stands for here (the translation step downstream needs a language, not a script).
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "el"),
    (0x0400, 0x052F, "ru"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"), (0x0750, 0x077F, "ar"),
    (0x0900, 0x097F, "hi"),
    (0x0E00, 0x0E7F, "th"),
    (0x1100, 0x11FF, "ko"), (0xAC00, 0xD7AF, "ko"),
    (0x3040, 0x30FF, "ja"),
    (0x3400, 0x4DBF, "zh"), (0x4E00, 0x9FFF, "zh"), (0xF900, 0xFAFF, "zh"), (0x20000, 0x2FA1F, "zh"),
)


def _script_of(ch: str) -> str:
    code = ord(ch)
    for low, high, language in _SCRIPTS:
        if low <= code <= high:
            return language
    return "en"  # Latin and everything else unlisted


def detect_language(text: str) -> str:
    """The language of the script most of the letters are in ("en" for Latin). Han with any
    kana is Japanese. Names such as "BERT" in a Chinese question do not outvote it."""
    counts = Counter(_script_of(ch) for ch in text if ch.isalpha())
    if not counts:
        return "en"
    if counts["ja"] and counts["ja"] + counts["zh"] >= max(counts.values()):
        return "ja"
    language, n = counts.most_common(1)[0]
    return language if n > counts["en"] or language == "en" else "en"


# --- paper references ----------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s?$")
# A paper named in the singular: "the paper on ...", "Mao's study". Title words alone name a
# paper only with one of these, since a topical question shares words with titles anyway.
_CUE = re.compile(r"\b(paper|study|article|report|publication|preprint|work|et al)\b", re.I)
_CUE_WORDS = frozenset("paper papers study studies article articles report reports publication publications preprint et al".split())
_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how do does did done is are was were be been being has have had can could "
    "would should may might must shall will please tell me us explain describe describes described discuss discusses "
    "discussed mention mentions mentioned say says said give gives given show shows shown present presents presented "
    "according main key major any some all each both about".split()
)
_INTENT_WORDS = frozenset(
    "compare compares compared comparing comparison comparisons versus vs differ differs differed difference differences "
    "contrast similarity similarities author authors authored wrote written write writes affiliation affiliations "
    "affiliated authorship work summary summarize summarise summarized summarised overview gist idea "
    "contribution contributions contribute contributes novel novelty new propose proposes proposed "
    "conclude concludes concluded conclusion conclusions finding findings result results outcome outcomes takeaway "
    "takeaways find method methods methodology approach approaches procedure built build constructed construct "
    "created create collected made trained done designed conducted evaluated list enumerate name kinds kind types "
    "sorts".split()
)


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
    stem_tokens = _TOKEN.findall(Path(paper.source).stem)
    if len(stem_tokens) == 1:
        candidates += [w for w in _TOKEN.findall(paper.title) if w.lower() == stem_tokens[0].lower() and _coined(w)]
    for name in candidates:
        key = " ".join(t.lower() for t in _TOKEN.findall(name))
        if key and key not in _QUESTION_WORDS and key not in _CUE_WORDS and content_words(key):
            short.add(key)
            if name.isupper() and name.isalpha():
                exact.add(key)
    return _Names(
        paper_id=paper.paper_id,
        short=frozenset(short),
        exact_case=frozenset(exact),
        surnames=frozenset(filter(None, (_surname(a) for a in paper.authors))),
        title_terms=frozenset(content_words(paper.title)) - frozenset(content_words(" ".join(_INTENT_WORDS | _CUE_WORDS))),
    )


_SUFFIXES = frozenset("jr sr ii iii iv phd md".split())


def _surname(author: str) -> str | None:
    """"Huixia Shang" -> "shang"; "Shang, Huixia" -> "shang"; initials and suffixes skipped."""
    name = author.split(",")[0] if "," in author else author
    tokens = [t for t in _TOKEN.findall(name) if len(t) > 1 and t.lower() not in _SUFFIXES]
    return tokens[-1].lower() if tokens else None


@dataclass(frozen=True)
class _Token:
    text: str  # as written, possessive dropped
    lower: str
    start: int
    first: bool  # the question's first word, capitalized whatever it is


def _tokens(question: str) -> list[_Token]:
    """Word tokens, each in one script: "BERT论文" is "BERT" then "论文"."""
    out = []
    for match in _TOKEN.finditer(question):
        for _, run in groupby(enumerate(match.group()), key=lambda item: _script_of(item[1])):
            run = list(run)
            text = "".join(ch for _, ch in run)
            out.append(_Token(text, text.lower(), match.start() + run[0][0], not out))
    # "Liu's": the tokenizer stops at the apostrophe; the lone "s" after it is no word.
    return [t for t in out if not (t.lower == "s" and question[t.start - 1 : t.start] in "'’")]


@dataclass(frozen=True)
class _Reference:
    papers: tuple[str, ...]
    tokens: frozenset[int]  # positions (in the token list) of the words that named them
    names: tuple[str, ...]  # the names as written, in question order
    author_names: tuple[str, ...] = ()  # those of them that are surnames


def resolve_papers(question: str, papers: Sequence[PaperInfo]) -> _Reference:
    """The papers a question names, when it names them unambiguously.

    Evidence per paper: its file named (weighted 3), a short name (3), a surname (1), each
    divided by how many papers share that name ("Liu" alone names neither of two papers with
    a Liu among their authors; "Shang and Liu" names the one with both). A paper is named at
    weight 1 or more. Only when no paper is named so, title words name one: after a singular
    cue such as "the paper on", at least two of its rarer title words, more than any other
    paper has. Names are looked up from the question's words, so a question costs about the
    same whatever the size of the library."""
    tokens = _tokens(question)
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
        return _by_title(question, tokens, lookup)
    # The words that named the chosen papers, which the topic leaves out.
    positions = frozenset(i for o in chosen for i in used[o])
    return _Reference(
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


def _short_matches(tokens: list[_Token], lookup: _Lookup, names: list[_Names], lowercase_question: bool):
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


def _cased(window: list[_Token], key: str, ns: _Names, lowercase_question: bool) -> bool:
    """An all-capitals short name is written in capitals: "PAL" the paper, not "pal" the word."""
    return key not in ns.exact_case or lowercase_question or all(t.text.isupper() for t in window)


def _name_cased(tokens: list[_Token], i: int, question: str, lowercase_question: bool) -> bool:
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


def _by_title(question: str, tokens: list[_Token], lookup: _Lookup) -> _Reference:
    none = _Reference((), frozenset(), ())
    n_papers = len(lookup.names)
    if not _CUE.search(question) or not n_papers:
        return none
    rare = max(1.0, 0.25 * n_papers)  # a word in most titles names none of them
    stems = [content_words(t.lower) for t in tokens]
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
    return _Reference((lookup.names[best].paper_id,), positions, tuple(tokens[i].text for i in sorted(positions)))


# --- comparison sides ------------------------------------------------------------------------

_TAIL = r"(?:\s+(?:in terms of|with respect to|regarding|on|in|for|when it comes to)\b.*|[:;,?].*)?[\s?.!]*$"
_A = r"(?P<a>[^:;,?]+?)"
_B = r"(?P<b>[^:;,?]+?)"
_SIDES = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bcompar(?:e|es|ed|ing)\s+" + _A + r"\s+(?:and|with|to|against|versus|vs\.?)\s+" + _B + _TAIL,
        r"\bhow\s+(?:does|do|did|is|are|was|were)\s+" + _A + r"\s+(?:compare|compares|differ|differs|contrast)\s+"
        r"(?:with|to|from|against)\s+" + _B + _TAIL,
        r"\b(?:differences?|similarit(?:y|ies)|contrast|comparison)\s+between\s+" + _A + r"\s+and\s+" + _B + _TAIL,
        r"(?P<a>(?:[^\s:;,?]+\s+){0,3}[^\s:;,?]+)\s+(?:versus|vs\.?)\s+" + _B + _TAIL,
        r"(?P<a>(?:[^\s:;,?]+\s+){0,3}[^\s:;,?]+)\s+(?:differs?|differed)\s+from\s+" + _B + _TAIL,
    )
)
_LEADING = re.compile(r"^(?:the|a|an|that of|those of|of)\s+", re.I)


def comparison_sides(question: str) -> tuple[str, ...]:
    """The two things compared, as short names: "Belarus's cultural industry" and "China's"
    become "Belarus" and "China" (a side's capitalized words, when it has any past its first)."""
    for pattern in _SIDES:
        match = pattern.search(question.strip())
        if match:
            a, b = (_side(match.group(g)) for g in ("a", "b"))
            if a and b and a.lower() != b.lower():
                return (a, b)
    return ()


def _side(text: str) -> str:
    text = _LEADING.sub("", text.strip(" ,;:?.!\"'"))
    words = [_POSSESSIVE.sub("", w) for w in text.split()]
    words = [w for w in words if w.lower() not in _CUE_WORDS]
    capitalized = [w for w in words if w[:1].isupper()]
    if capitalized and len(capitalized) < len(words):
        # the longest run of capitalized words: "the Belt and Road countries" keeps "Belt"
        runs, run = [], []
        for w in words:
            run = run + [w] if w[:1].isupper() else []
            runs.append(list(run))
        return " ".join(max(runs, key=len))
    return " ".join(words)


# --- the plan --------------------------------------------------------------------------------


def plan_question(question: str, papers: Sequence[PaperInfo]) -> QueryPlan:
    """Read a question against the library's papers: see QueryPlan."""
    reference = resolve_papers(question, papers)
    intent = detect_intent(question)
    topic = _topic(question, reference)
    sections = SECTIONS[intent]
    if intent == "summary" and not content_words(topic):
        sections = WHOLE_PAPER
    sides = comparison_sides(question) if intent == "comparison" else ()
    if intent == "comparison" and not sides and len(reference.names) >= 2:
        sides = reference.names[:2]
    if intent == "comparison" and not sides and listed_noun(question) and _OPEN_COMPARISON.search(question):
        intent, sections = "list", SECTIONS["list"]  # "which baselines does PAL compare against?" lists them
    caption_ref, topic = _caption_reference(question, topic)
    section_ref, topic = _section_reference(question, topic)
    if caption_ref and intent in ("fact", "summary", "list", "conclusion"):
        intent, sections = "summary", ()  # what a table holds or a figure shows: read from it
    if section_ref and intent in ("fact", "summary", "method", "contribution"):
        intent, sections = "summary", (section_ref,)  # what a section says is read from it
    elif section_ref:
        sections = (section_ref, *sections)
    defines = defined_term(question) if intent == "fact" else ""
    if defines and defines.lower() in {n.lower() for n in reference.names}:
        intent, sections, defines = "summary", WHOLE_PAPER, ""  # "What is PAL?" of the PAL paper: its summary
    return QueryPlan(
        question=question,
        papers=reference.papers,
        intent=intent,
        sections=sections,
        topic=topic,
        comparison_sides=sides,
        names=reference.names,
        author_names=reference.author_names,
        wants_number=bool(_QUANTITY.search(question)),
        defines=defines,
        listed=listed_noun(question),
        section_ref=section_ref,
        caption_ref=caption_ref,
        language=detect_language(question),
    )


_NUMBER = re.compile(r"\d+(?:\.\d+)*")
# "section 3.2", "§3", "the introduction of", "the related work section": a section by number or name.
_SECTION_REF = re.compile(
    r"(?:\b(?:section|sec\.|chapter)\s*|§\s*)(?P<number>\d+(?:\.\d+)*)\b"
    r"|\b(?:the\s+)?(?P<name>introduction|background|related work|literature review|methodology|methods"
    r"|experimental setup|experiments|results|discussion|conclusions?|abstract|appendix|evaluation)"
    r"(?:\s+section)?\s+(?:of|in)\b"
    r"|\b(?:the\s+)?(?P<named>introduction|background|related work|literature review|methodology|methods"
    r"|experimental setup|experiments|results|discussion|conclusions?|abstract|appendix|evaluation)\s+section\b",
    re.I,
)


_CAPTION_REF = re.compile(r"\b(?P<kind>table|tab\.|figure|fig\.)\s*(?P<number>\d+)\b", re.I)


def _caption_reference(question: str, topic: str) -> tuple[str, str]:
    """The table or figure the question names ("table 2"), and the topic without it."""
    match = _CAPTION_REF.search(question)
    if not match:
        return "", topic
    kind = "table" if match.group("kind").lower().startswith("tab") else "figure"
    number = match.group("number")
    kept = [w for w in topic.split() if w.lower().rstrip(".") not in ("table", "tab", "figure", "fig") and w != number]
    return f"{kind} {number}", " ".join(kept)


def captions(ref: str, caption: str) -> bool:
    """Whether a caption ("Table 2: Market Growth ...", "Fig. 3. ...") is that of `ref`."""
    kind, number = ref.split()
    prefix = r"(?:table|tab\.)" if kind == "table" else r"(?:figure|fig\.)"
    return bool(re.match(rf"\s*{prefix}\s*{number}(?!\d)", caption, re.I))


def _section_reference(question: str, topic: str) -> tuple[str, str]:
    """The section the question names, by number or by name, and the topic without it."""
    match = _SECTION_REF.search(question)
    if not match:
        return "", topic
    ref = (match.group("number") or match.group("name") or match.group("named")).lower()
    drop = set(content_words(f"section sec chapter {ref}"))
    kept = [w for w in topic.split() if w.strip("§.") != ref and not set(content_words(w)) & drop]
    return ref, " ".join(kept)


# A comparison verb with nothing after it: what it is compared with is what the question asks.
_OPEN_COMPARISON = re.compile(r"\b(compar\w*|contrast\w*)(\s+(against|with|to))?\s*[?.!]*\s*$", re.I)
_QUANTITY = re.compile(
    r"\bhow (many|much|large|big|long|fast|often|small)\b|\bwhat (percentage|proportion|fraction|share|number|amount)\b"
    r"|\bby how\b|\bhow (high|low) (is|was|are|were)\b",
    re.I,
)
_DEFINITION = re.compile(
    r"^\s*what\s+is\s+meant\s+by\s+(?:an?\s+|the\s+)?(?P<d>[^?,;]{2,60}?)\s*\?*\s*$"
    r"|^\s*(?:what|who)\s+(?:is|are|was|were)\s+(?:an?\s+|the\s+)?(?P<a>[^?,;]{2,60}?)\s*\?*\s*$"
    r"|^\s*(?:define|explain)\s+(?:the\s+term\s+)?(?P<b>[^?,;]{2,60}?)[.?]*\s*$"
    r"|^\s*what\s+(?:does|do)\s+(?P<c>[^?,;]{2,60}?)\s+(?:mean|stand\s+for)\s*\?*\s*$",
    re.I,
)
# Words that make a "what is ..." a question about a state or relation, not a term.
_NOT_TERM = frozenset("in on by for with to from about at new meant used done like".split())


def defined_term(question: str) -> str:
    """The term a definition question asks about ("What is Adversarial Filtering?"), when it
    is a short name of a thing rather than a clause; "" otherwise."""
    match = _DEFINITION.match(question)
    term = next((g for g in match.groups() if g), "") if match else ""
    term = re.sub(r"\s+(?:in|within|according to)\s+.*$", "", term)  # "X in the HellaSwag paper" is X
    words = term.split()
    if not words or len(words) > 5 or any(w.lower() in _QUESTION_WORDS or w.lower() in _NOT_TERM for w in words):
        return ""
    return term


def without_names(text: str, names: Sequence[str]) -> str:
    """`text` without the surnames that named its papers: once a search is scoped to those
    papers they say nothing more, and matched as words they find namesakes ("Mao's paper"
    would rank a quote of Mao Zedong first)."""
    for name in names:
        text = re.sub(r"\b" + re.escape(name) + r"(['’]s)?\b", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _topic(question: str, reference: _Reference) -> str:
    """The question's own words, without the paper reference, question words and intent words:
    what to search for inside the papers."""
    kept = []
    for i, token in enumerate(_tokens(question)):
        if i in reference.tokens:
            continue
        low = token.lower
        if low in _QUESTION_WORDS or low in _INTENT_WORDS or low in _CUE_WORDS or not content_words(low) and token.text.isascii():
            continue
        kept.append(token.text)
    return " ".join(kept)


# --- headings --------------------------------------------------------------------------------


def match_headings(plan: QueryPlan, headings: Sequence[str]) -> list[str]:
    """The headings whose words meet the question's topic words, best first: each shared word
    weighs by how few of these headings have it (a word in every heading picks none). Headings
    scoring under half the best are left out."""
    return _ranked(plan.topic_words, headings)


def section_headings(plan: QueryPlan, headings: Sequence[str]) -> list[str]:
    """The headings that name one of the plan's sections ("4. Findings and Analysis" for
    "findings", "3.2 Give Full Play ..." for "3.2"), in the given order."""
    return [h for h in headings if section_rank(plan, [h]) is not None]


def section_rank(plan: QueryPlan, heading_path: Sequence[str]) -> int | None:
    """Which of the plan's sections (best first: "conclusion" before "findings") a heading on
    the path names; None when none does."""
    wanted = [s for s in plan.sections if s != FRONT_MATTER]
    for rank, section in enumerate(wanted):
        if any(_names_section(section, h) for h in heading_path):
            return rank
    return None


def _names_section(section: str, heading: str) -> bool:
    """"3.2 Give Full Play ..." names section "3.2" (and "3. The ..." section "3", but not
    "3.2 ..."); "4. Findings and Analysis" names "findings"."""
    if _NUMBER.fullmatch(section):
        return bool(re.match(rf"\s*(?:section\s+)?{re.escape(section)}\.?(?:\s|$)", heading, re.I))
    want, words = content_words(section), content_words(heading)
    return bool(want) and all(any(_same_word(w, h) for h in words) for w in want)


def _ranked(words: Sequence[str], headings: Sequence[str]) -> list[str]:
    if not words or not headings:
        return []
    heading_words = [set(content_words(h)) for h in headings]
    df = Counter(w for hw in heading_words for w in set(words) if any(_same_word(w, h) for h in hw))
    weight = {w: math.log(len(headings) / df[w]) for w in df}
    scores = [sum(weight[w] for w in weight if any(_same_word(w, h) for h in hw)) for hw in heading_words]
    best = max(scores)
    if best <= 0:
        return []
    order = sorted(range(len(headings)), key=lambda i: (-scores[i], i))
    return [headings[i] for i in order if scores[i] > 0 and scores[i] >= 0.5 * best]


def _same_word(a: str, b: str) -> bool:
    """Stems equal, or one a 5+ letter prefix of the other: the stemmer leaves
    "international" as "internat" and "internationalization" as "internation"."""
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 5 and long.startswith(short)
