"""The papers a question names (by file, short name, surname or title) and its language, over a
library of the seven real papers' metadata plus made-up papers whose names collide with theirs
and with ordinary words."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ARAGOG, CORPUS

from culture_rag.answer.language import detect_language
from culture_rag.answer.naming import resolve_papers, without_names
from culture_rag.ingest.metadata import read_metadata_file
from culture_rag.ingest.papers import read_paper
from culture_rag.types import PaperInfo


def _info(paper_id: str, source: str, title: str, authors: tuple[str, ...]) -> PaperInfo:
    return PaperInfo(paper_id, source, title, authors, Path(source).suffix[1:], None, 1, "", "", "")


def _read(path: Path, meta=None):
    paper = read_paper(path, meta=meta)
    return paper, _info(paper.paper_id, paper.source, paper.title, paper.authors)


@pytest.fixture(scope="module")
def real():
    """The seven real papers as read: the two of corpus/ (with papers.toml) and the five PDFs."""
    meta = read_metadata_file(CORPUS)
    files = [p for p in sorted(CORPUS.iterdir()) if p.suffix in (".md", ".txt")] + sorted(ARAGOG.glob("*.pdf"))
    return [_read(p, meta.get(p.name)) for p in files]


MADE_UP = [
    # a surname shared with CodeNet's Wei Zhang
    _info("graphformer", "graphformer.pdf", "GraphFormer: Attention over Citation Graphs", ("Wei Zhang", "Maria Rossi")),
    # a surname that is an ordinary word, and a plain-words title lead that is no short name
    _info("long-review", "long-2021-deep-learning-review.pdf", "Deep Learning: A Review", ("Alice Long",)),
    # an all-capitals short name that is an ordinary word
    _info("race", "race.pdf", "RACE: Large-scale ReAding Comprehension Dataset From Examinations", ("Guokun Lai", "Qizhe Xie")),
    _info("silk", "nurlanova-creative-economy.txt", "Creative Economy Clusters along the Silk Road in Central Asia", ("Aigerim Nurlanova",)),
    # an ordinary word as the file name, and an author written "Surname, Given"
    _info("survey", "survey.pdf", "A Survey of Retrieval-Augmented Generation", ("Chen, Li",)),
    # one short name inside another
    _info("gpt", "gpt.pdf", "GPT: Improving Language Understanding by Generative Pre-Training", ()),
    _info("gpt3", "gpt3.pdf", "GPT-3: Language Models are Few-Shot Learners", ()),
]


@pytest.fixture(scope="module")
def library(real):
    return [info for _, info in real] + MADE_UP


def _id(library, prefix: str) -> str:
    return next(p.paper_id for p in library if p.paper_id.startswith(prefix))


def test_the_real_metadata_is_what_the_references_rely_on(library):
    by_id = {p.paper_id: p for p in library}
    assert by_id["distilbert"].authors[0].split()[-1].lower() == "sanh"
    assert by_id["bert"].title.startswith("BERT:") and by_id["hellaswag"].title.startswith("HellaSwag:")
    assert any("Liu" in a for a in by_id[_id(library, "shang")].authors) and any("Liu" in a for a in by_id["pal"].authors)


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What does Shang and Liu's paper conclude?", ["shang"]),
        ("According to Mao's study, what limits exports?", ["mao"]),
        ("What does Sanh et al. propose?", ["distilbert"]),
        ("What did SANH and WOLF measure?", ["distilbert"]),
        ("Who are the authors of the BERT paper?", ["bert"]),  # not DistilBERT, whose title says BERT
        ("How small is DistilBERT?", ["distilbert"]),  # not BERT: whole tokens
        ("Compare DistilBERT and BERT", ["bert", "distilbert"]),
        ("How was the HellaSwag dataset built?", ["hellaswag"]),
        ("how was the hellaswag dataset built", ["hellaswag"]),
        ("What accuracy does PAL reach on GSM8K?", ["pal"]),
        ("Which tasks does CodeNet cover?", ["codenet"]),
        ("What does bert.pdf say about masking?", ["bert"]),
        ("Zhang and Rossi use which attention?", ["graphformer"]),
        ("What does Long's review cover?", ["long-review"]),
        ("How hard are the questions of the RACE dataset?", ["race"]),
        ("What does Chen conclude about retrieval?", ["survey"]),
        ("What does the paper on program-aided language models conclude?", ["pal"]),
        ("What does the study on creative economy clusters in Central Asia find?", ["silk"]),
        ("Mao's study: what does it conclude?", ["mao"]),  # a first word is capitalized anyway
        ("Sanh et al. introduce which model?", ["distilbert"]),
        ("Shang and Liu propose which paths?", ["shang"]),
        ("How many examples did GPT-3 see?", ["gpt3"]),  # the longer name, not also GPT's
        ("What does GPT pre-train on?", ["gpt"]),
    ],
)
def test_paper_references_resolve(library, question, expected):
    assert resolve_papers(question, library).papers == tuple(sorted(_id(library, e) for e in expected))


@pytest.mark.parametrize(
    "question",
    [
        "What strategies do the papers propose for China's cultural industry to go international?",
        "What risks of AI are mentioned?",  # "AI" is a word of one title, but nothing names a paper
        "What did Liu find?",  # two papers have a Liu
        "What does Zhang's paper say?",  # so do these
        "How long does pre-training take?",  # Long is an author
        "Is the race between the two economies close?",  # RACE is a paper, race a word
        "My pal says deep learning is a review topic; is that true?",
        "What survey methods did the researchers use?",  # survey.pdf is a file, survey a word
        "What does the study say about the cultural industry?",  # words of two titles
        "Long answers or short: which do the models give?",
        "What do the papers say about the Belt and Road?",
    ],
)
def test_no_scope_without_a_confident_reference(library, question):
    assert resolve_papers(question, library).papers == ()


def test_references_follow_the_metadata_not_the_paper(real):
    """The same title under another author: the name that resolves is the metadata's."""
    shang = next(info for _, info in real if info.paper_id.startswith("shang"))
    renamed = [PaperInfo(**{**shang.__dict__, "paper_id": "doe-2030", "source": "doe-2030.md", "authors": ("Jane Doe",)})]
    others = [info for _, info in real if info is not shang]
    assert resolve_papers("What does Doe's paper conclude?", renamed + others).papers == ("doe-2030",)
    assert resolve_papers("What does Shang's paper conclude?", renamed + others).papers == ()


def test_no_papers_no_scope():
    assert resolve_papers("What does Mao conclude?", []).papers == ()


def test_surnames_that_name_a_paper_are_kept_apart_from_its_topic(library):
    ref = resolve_papers("What methods does Mao use?", library)
    assert ref.papers and ref.author_names == ("Mao",)
    assert resolve_papers("What paths do Shang and Liu propose?", library).author_names == ("Shang", "Liu")
    assert resolve_papers("What does the BERT paper conclude?", library).author_names == ()  # a title's name is its topic
    assert without_names("What methods does Mao's paper use?", ("Mao",)) == "What methods does paper use?"
    assert without_names("Maoist themes", ("Mao",)) == "Maoist themes"  # whole words only


@pytest.mark.parametrize(
    "text, language",
    [
        ("What is BERT?", "en"),
        ("Qu'est-ce que la stratégie culturelle de la Chine ?", "en"),  # Latin script: no model guesses further
        ("BERT论文的作者是谁？", "zh"),
        ("中国文化产业走出去有哪些策略？", "zh"),
        ("Какие стратегии предлагают авторы для BERT?", "ru"),
        ("このBERT論文の著者は誰ですか", "ja"),
        ("ما هي استراتيجيات الصناعة الثقافية؟", "ar"),
        ("Ποια είναι τα αποτελέσματα;", "el"),
        ("Tell me about 文化", "en"),
        ("2019?", "en"),
        ("", "en"),
    ],
)
def test_language_by_script(text, language):
    assert detect_language(text) == language


def test_a_chinese_question_names_a_paper_by_its_latin_name(library):
    question = "BERT论文的作者是谁？"
    assert detect_language(question) == "zh" and resolve_papers(question, library).papers == ("bert",)


def test_a_title_written_out_names_its_paper_though_another_title_shares_most_of_its_words(library):
    """The two shipped papers' titles share "the development of the cultural industry ... Belt
    and Road": title words alone named neither, so a question quoting one title in full searched
    both and answered from the title's words. Written out (quoted or not, any case), a title
    names its paper; a question using a few of its words names none."""
    shang = _id(library, "shang")
    quoted = 'In the paper "On the International Development of Cultural Industry in the Belt and Road Initiative", what strategies are proposed?'
    assert resolve_papers(quoted, library).papers == (shang,)
    plain = "on the international development of cultural industry in the belt and road initiative: which strategies?"
    assert resolve_papers(plain, library).papers == (shang,)
    assert resolve_papers("What is the international development of cultural industry?", library).papers == ()
    assert resolve_papers("What do the papers say about the Belt and Road Initiative?", library).papers == ()
