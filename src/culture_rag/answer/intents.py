"""What kind of answer a question asks for: its intent (a fact, a method, a list, a
comparison...), the parts of a paper where each intent's answer is expected, and what else its
wording says about the answer: the things compared, the plural noun a list asks for, the term a
definition asks about, whether it wants a figure, and the questions a compound question asks.

Plain rules over the question's words; words are compared as the keyword index sees them
(lexical.content_words).
"""

from __future__ import annotations

import re

from culture_rag.answer.words import CUE_WORDS, QUESTION_WORDS
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


# --- comparisons -----------------------------------------------------------------------------

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
_POSSESSIVE = re.compile(r"['’]s?$")
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
    words = [w for w in words if w.lower() not in CUE_WORDS]
    capitalized = [w for w in words if w[:1].isupper()]
    if capitalized and len(capitalized) < len(words):
        # the longest run of capitalized words: "the Belt and Road countries" keeps "Belt"
        runs, run = [], []
        for w in words:
            run = run + [w] if w[:1].isupper() else []
            runs.append(list(run))
        return " ".join(max(runs, key=len))
    return " ".join(words)


_OPEN_COMPARISON = re.compile(r"\b(compar\w*|contrast\w*)(\s+(against|with|to))?\s*[?.!]*\s*$", re.I)


def open_comparison(question: str) -> bool:
    """A comparison verb with nothing after it ("which baselines does PAL compare against?"):
    what it is compared with is what the question asks."""
    return bool(_OPEN_COMPARISON.search(question))


# --- definitions and figures -----------------------------------------------------------------

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
    if not words or len(words) > 5 or any(w.lower() in QUESTION_WORDS or w.lower() in _NOT_TERM for w in words):
        return ""
    return term


_QUANTITY = re.compile(
    r"\bhow (many|much|large|big|long|fast|often|small)\b|\bwhat (percentage|proportion|fraction|share|number|amount)\b"
    r"|\bby how\b|\bhow (high|low) (is|was|are|were)\b",
    re.I,
)


def asks_number(question: str) -> bool:
    """"How many ...?", "what percentage ...?": the answer holds a figure."""
    return bool(_QUANTITY.search(question))
