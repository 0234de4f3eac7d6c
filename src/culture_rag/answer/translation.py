"""Questions in other languages, translated into English by the local model before retrieval:
the papers and the embedder are English. English questions pass through at no cost."""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from culture_rag.answer.generation import Generator, LocalGenerator
from culture_rag.settings import Settings

LANGUAGE_NAMES = {"zh": "Chinese", "ru": "Russian"}
TRANSLATION_TOKENS = 64  # a question; a model that runs on is cut off

# A Han character carries about a word, so it weighs more than one letter of a Latin name.
_HAN_WEIGHT = 3

SYSTEM_PROMPT = (
    "You translate questions about research papers into English. Reply with the English question "
    "only: no explanation, no answer, no quotes. Keep names, numbers, abbreviations and technical "
    "terms exactly as written."
)

# Chinese names written in Russian follow the Palladius system; the models guess them wrongly
# (Шан → "Shan", "Zhang"), so they are converted to pinyin by its rules before translation.
_INITIALS = {"чж": "zh", "цз": "z", "ч": "ch", "ш": "sh", "ж": "r", "ц": "c", "с": "s", "б": "b", "п": "p",
             "м": "m", "ф": "f", "д": "d", "т": "t", "н": "n", "л": "l", "г": "g", "к": "k", "х": "h", "": ""}
_PALATAL = {"z": "j", "c": "q", "s": "x"}
_FINALS = {"а": "a", "ай": "ai", "ань": "an", "ан": "ang", "ао": "ao", "э": "e", "эй": "ei", "энь": "en",
           "эн": "eng", "ы": "i", "и": "i", "я": "ia", "ян": "iang", "янь": "ian", "яо": "iao", "е": "ie",
           "ю": "iu", "инь": "in", "ин": "ing", "юн": "iong", "о": "uo", "оу": "ou", "ун": "ong", "у": "u",
           "уа": "ua", "уай": "uai", "уань": "uan", "уан": "uang", "уй": "ui", "унь": "un", "юй": "ü",
           "юань": "üan", "юнь": "ün", "юэ": "üe"}
_ZERO = {"а": "a", "ай": "ai", "ань": "an", "ан": "ang", "ао": "ao", "э": "e", "эй": "ei", "энь": "en",
         "эн": "eng", "эр": "er", "о": "o", "оу": "ou", "и": "yi", "я": "ya", "ян": "yang", "янь": "yan",
         "яо": "yao", "е": "ye", "ю": "you", "инь": "yin", "ин": "ying", "юн": "yong", "у": "wu", "ва": "wa",
         "вай": "wai", "вань": "wan", "ван": "wang", "вэй": "wei", "вэнь": "wen", "вэн": "weng", "во": "wo",
         "юй": "yu", "юань": "yuan", "юнь": "yun", "юэ": "yue"}
_CASE_ENDINGS = ("ом", "ем", "ой", "а", "у", "е", "я")


def _syllable(cyr: str) -> str | None:
    if cyr in _ZERO:
        return _ZERO[cyr]
    for size in (2, 1):
        initial, final = cyr[:size], cyr[size:]
        if initial not in _INITIALS or not initial or final not in _FINALS:
            continue
        latin, vowels = _INITIALS[initial], _FINALS[final]
        if final == "ы" and latin not in ("z", "c", "s"):
            return None
        if vowels[0] in "iü" and final != "и" and latin in ("g", "k", "h", "zh", "ch", "sh", "r"):
            return None  # no such syllable in Mandarin: a Russian word (Китай)
        if final == "и" and latin in ("g", "k", "h"):
            return None
        if vowels[0] in "iü" and latin in _PALATAL and final != "ы" and latin + vowels not in ("zhi", "chi", "shi", "ri"):
            latin = _PALATAL[latin]
            vowels = vowels.replace("ü", "u")
        if final == "о" and latin in ("b", "p", "m", "f"):
            vowels = "o"
        return latin + vowels
    return None


def _syllables(cyr: str, most: int) -> str | None:
    if (one := _syllable(cyr)) is not None:
        return one
    if most < 2:
        return None
    for cut in range(1, len(cyr)):
        head, tail = _syllable(cyr[:cut]), _syllable(cyr[cut:])
        if head is not None and tail is not None:
            return head + tail
    return None


def palladius_to_pinyin(word: str, first: bool = False) -> str | None:
    """Pinyin for a capitalised Cyrillic word that reads as a Chinese name in the Palladius
    system (a declined surname too: Шана → Shang); None for anything else. A sentence's first
    word must be a single syllable of three letters or more, so that "Она" stays Russian."""
    if not word[:1].isupper() or not all(_script(c) == "ru" for c in word):
        return None
    low = word.lower()
    stems = [low] + [low[: -len(e)] for e in _CASE_ENDINGS if low.endswith(e) and len(low) > len(e) + 1]
    found = next((p for stem in stems if (p := _syllable(stem))), None)
    if first:
        return found.capitalize() if found and len(word) >= 3 else None
    found = found or _syllables(low, 2)  # a given name; declined ones stay, stems of two syllables misread (Индия)
    return found.capitalize() if found else None


def romanize_names(text: str) -> str:
    """The text with Chinese names in Cyrillic replaced by their pinyin."""
    out, first = [], True
    for token in re.split(r"(\w+)", text):
        if token and token[0].isalpha():
            out.append(palladius_to_pinyin(token, first) or token)
            first = False
        else:
            out.append(token)
            first = first or bool(re.search(r"[.!?]", token))
    return "".join(out)


@dataclass(frozen=True)
class Translation:
    english: str
    source_language: str  # "en", "zh", "ru" or "other"
    ms: float  # time spent translating; 0 for English


def _script(char: str) -> str | None:
    if not char.isalpha():
        return None
    code = ord(char)
    if 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF:
        return "zh"
    name = unicodedata.name(char, "")
    if name.startswith("CYRILLIC"):
        return "ru"
    if name.startswith("LATIN"):
        return "en"
    return "other"


def detect_language(text: str) -> str:
    """"en", "zh", "ru" or "other": the non-Latin script most letters are written in, when such
    letters make a quarter of the text or more; otherwise "en" (Latin letters go to retrieval
    as they are). Questions in Chinese or Russian often name English models (BERT)."""
    weights = {"en": 0, "zh": 0, "ru": 0, "other": 0}
    for char in text:
        if script := _script(char):
            weights[script] += _HAN_WEIGHT if script == "zh" else 1
    if any(0x3040 <= ord(c) <= 0x30FF or 0xAC00 <= ord(c) <= 0xD7AF for c in text):
        return "other"  # Japanese or Korean, whatever Han characters they hold
    foreign = max(("zh", "ru", "other"), key=lambda k: weights[k])
    return foreign if weights[foreign] and 4 * weights[foreign] >= sum(weights.values()) else "en"


# Characters after which a Chinese surname stands as a name: "尚和刘的论文" (Shang and Liu's
# paper), "毛等人" (Mao et al.), "尚教授" (Professor Shang).
_NAME_MARKERS = ("的", "和", "与", "跟", "及", "、", "等", "教授", "博士", "老师", "认为", "提出", "指出")


def romanize_surnames(text: str, surnames: frozenset[str]) -> str:
    """The text with each Han character that stands as the surname of an author in the library
    written in pinyin ("请总结尚和刘的论文" -> "请总结Shang和Liu的论文"): one of its readings
    (pypinyin, every reading of a heteronym) is in `surnames`, and a word that marks a name
    follows it, after at most two more characters (a given name). The model keeps a name
    written in Latin letters as it is; it had rendered 尚 as "Sun" and "Song". A character of a
    word ("中国和" holds 国, Guo) is still read as the word: the model translates "中Guo和" as
    "China and", measured on this machine."""
    from pypinyin import Style, pinyin

    out = []
    for i, char in enumerate(text):
        name = None
        if _script(char) == "zh" and any(text.startswith(m, j) for j in range(i + 1, i + 4) for m in _NAME_MARKERS):
            name = next((r for r in pinyin(char, style=Style.NORMAL, heteronym=True)[0] if r in surnames), None)
        out.append(name.capitalize() if name else char)
    return "".join(out)


def model_input(text: str, language: str, surnames: frozenset[str] = frozenset()) -> str:
    """What the model is given to translate: Chinese names written in pinyin, by Palladius's
    rules in Russian, and in Chinese where a character stands as one of `surnames` (the
    library's authors')."""
    if language == "ru":
        return romanize_names(text)
    return romanize_surnames(text, surnames) if language == "zh" else text


def translate_question(text: str, language: str, generator: Generator, surnames: frozenset[str] = frozenset()) -> Translation:
    """The question in English, from a model that runs deterministically (temperature 0)."""
    if language == "en":
        return Translation(text, language, 0.0)
    return _translated(text, model_input(text, language, surnames), language, generator)


def _translated(text: str, named: str, language: str, generator: Generator) -> Translation:
    start = time.perf_counter()
    source = LANGUAGE_NAMES.get(language, "its language")
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Translate from {source} into English:\n{named}"},
    ]
    english = _clean("".join(generator.stream(messages)))
    return Translation(english or text, language, (time.perf_counter() - start) * 1000)


def _clean(reply: str) -> str:
    """The first line of the reply, without the labels and quotes small models like to add."""
    line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
    line = re.sub(r"^(english|translation|english translation)\s*:\s*", "", line, flags=re.I)
    return line.strip().strip("\"'“”«»").strip()


class QuestionTranslator:
    """`translate_question` with a bounded cache by what the model is given: the same question
    asked again, or re-asked as part of a conversation, costs nothing."""

    @classmethod
    def from_settings(cls, settings: Settings, answering: Generator | None = None) -> QuestionTranslator:
        """A translator with `settings.translation_model`, sharing the answering model's memory
        when that is the same local model."""
        if isinstance(answering, LocalGenerator) and answering.name == settings.translation_model:
            return cls(answering.limited(TRANSLATION_TOKENS))
        return cls(LocalGenerator(settings, model=settings.translation_model, max_tokens=TRANSLATION_TOKENS))

    def __init__(self, generator: Generator, size: int = 256) -> None:
        self.generator = generator
        self.size = size
        self._cache: OrderedDict[str, Translation] = OrderedDict()
        self._lock = threading.Lock()

    def translate(self, text: str, surnames: frozenset[str] = frozenset()) -> Translation:
        """`surnames`: the library's authors' surnames, lowercase, for a Chinese question."""
        language = detect_language(text)
        if language == "en":
            return Translation(text, language, 0.0)
        named = model_input(text, language, surnames)  # the key: another library may read other names
        with self._lock:
            if named in self._cache:
                self._cache.move_to_end(named)
                cached = self._cache[named]
                return Translation(cached.english, cached.source_language, 0.0)
        translation = _translated(text, named, language, self.generator)
        with self._lock:
            self._cache[named] = translation
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return translation
