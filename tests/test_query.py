"""Understanding a question: paper references, intents, comparison sides, topic, headings and
language, over a library of the seven real papers' metadata plus made-up papers whose names
collide with theirs and with ordinary words."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ARAGOG, CORPUS

from culture_rag.answer.headings import match_headings, section_headings
from culture_rag.answer.intents import INTENTS, comparison_sides, defined_term, detect_intent, listed_noun
from culture_rag.answer.language import detect_language
from culture_rag.answer.naming import without_names
from culture_rag.answer.query import plan_question
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
    assert plan_question(question, library).papers == tuple(sorted(_id(library, e) for e in expected))


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
    assert plan_question(question, library).papers == ()


def test_references_follow_the_metadata_not_the_paper(real):
    """The same title under another author: the name that resolves is the metadata's."""
    shang = next(info for _, info in real if info.paper_id.startswith("shang"))
    renamed = [PaperInfo(**{**shang.__dict__, "paper_id": "doe-2030", "source": "doe-2030.md", "authors": ("Jane Doe",)})]
    others = [info for _, info in real if info is not shang]
    assert plan_question("What does Doe's paper conclude?", renamed + others).papers == ("doe-2030",)
    assert plan_question("What does Shang's paper conclude?", renamed + others).papers == ()


def test_no_papers_no_scope():
    plan = plan_question("What does Mao conclude?", [])
    assert plan.papers == () and plan.intent == "conclusion"


@pytest.mark.parametrize(
    "question, intent",
    [
        ("What does the study conclude?", "conclusion"),
        ("What are the main findings about film exports?", "conclusion"),
        ("What did the authors find about exports?", "conclusion"),
        ("What do the authors conclude?", "conclusion"),  # "authors" as the subject is no authors question
        ("What results are reported on SQuAD?", "conclusion"),
        ("How was the survey conducted?", "method"),
        ("What methodology does the study use?", "method"),
        ("How were the data collected?", "method"),
        ("Describe the approach taken to label the endings.", "method"),
        ("How did they train the small model?", "method"),
        ("What are the main contributions of this work?", "contribution"),
        ("What is new in this model?", "contribution"),
        ("What does this paper propose?", "contribution"),
        ("Which novel benchmark is introduced?", "contribution"),
        ("Who wrote the paper on code datasets?", "authors"),
        ("Who are the authors?", "authors"),
        ("What is the affiliation of the first author?", "authors"),
        ("Where do the authors of the dataset paper work?", "authors"),
        ("Which university is the author from?", "authors"),
        ("List the names of the authors of the BERT paper.", "authors"),
        ("What limitations do the authors of HellaSwag mention?", "limitations"),  # what they say, not who
        ("What did the authors of the survey find?", "conclusion"),
        ("What are the shortcomings of the proposed approach?", "limitations"),
        ("What future work does the paper suggest?", "future"),
        ("What is the key idea of the method?", "summary"),
        ("How does digital technology affect cultural industries?", "fact"),  # an effect, not a method
        ("How does the model solve the task?", "method"),
        ("What does the SWOT analysis say about the country?", "summary"),
        ("How can the cultural industry improve its international influence?", "list"),  # asks for ways
        ("What pre-training tasks does the model use?", "list"),  # a hyphenated word before the plural noun
        ("Which future research directions are open?", "future"),
        ("What strategies do the papers propose for exports?", "list"),
        ("What risks of AI are mentioned?", "list"),
        ("Which challenges does Belarus face?", "list"),
        ("What are the main obstacles to cultural exports?", "list"),
        ("List the recommendations for policy makers.", "list"),
        ("What kinds of tasks are included?", "list"),
        ("In what ways can the two countries cooperate?", "list"),
        ("Summarize the SWOT analysis of the country's cultural industry.", "summary"),
        ("Give an overview of the benchmark.", "summary"),
        ("What is the program-aided paper about?", "summary"),
        ("How does Belarus's cultural industry compare with China's?", "comparison"),
        ("Compare the two models.", "comparison"),
        ("BERT vs DistilBERT: which is faster?", "comparison"),
        ("What is the difference between fine-tuning and feature-based transfer?", "comparison"),
        ("How does the distilled model differ from the original?", "comparison"),
        ("What was the export value of cultural products in 2019?", "fact"),
        ("When was the Belt and Road Initiative proposed?", "fact"),
        ("How many layers does the base model have?", "fact"),
        ("What is a transformer?", "fact"),
    ],
)
def test_intents(question, intent):
    assert detect_intent(question) == intent


def test_surnames_that_name_a_paper_are_kept_apart_from_its_topic(library):
    plan = plan_question("What methods does Mao use?", library)
    assert plan.papers and plan.author_names == ("Mao",)
    assert plan_question("What paths do Shang and Liu propose?", library).author_names == ("Shang", "Liu")
    assert plan_question("What does the BERT paper conclude?", library).author_names == ()  # a title's name is its topic
    assert without_names("What methods does Mao's paper use?", ("Mao",)) == "What methods does paper use?"
    assert without_names("Maoist themes", ("Mao",)) == "Maoist themes"  # whole words only


@pytest.mark.parametrize(
    "question, term",
    [
        ("What is Adversarial Filtering?", "Adversarial Filtering"),
        ("What is knowledge distillation?", "knowledge distillation"),
        ("What is meant by the Goldilocks zone?", "Goldilocks zone"),
        ("What is the Goldilocks zone in HellaSwag?", "Goldilocks zone"),
        ("Define soft power.", "soft power"),
        ("What does NSP stand for?", "NSP"),
        ("What is new in this model?", ""),  # a state, not a term
        ("What is done to protect the heritage?", ""),  # a clause
        ("What are the main contributions of this work?", ""),
    ],
)
def test_the_term_a_definition_question_asks_about(question, term):
    assert defined_term(question) == term


@pytest.mark.parametrize(
    "question, ref, intent",
    [
        ("What does section 3.2 of the paper say?", "3.2", "summary"),
        ("Summarize §4 of the study.", "4", "summary"),
        ("Summarize the introduction of the BERT paper.", "introduction", "summary"),
        ("What is discussed in the related work of PAL?", "related work", "summary"),
        ("What does the discussion section say about pretraining?", "discussion", "summary"),
        ("Which results are reported?", "", "conclusion"),  # results, not a section named
    ],
)
def test_a_section_named_by_number_or_name(question, ref, intent):
    plan = plan_question(question, [])
    assert (plan.section_ref, plan.intent) == (ref, intent)
    assert not ref or plan.sections[0] == ref and "section" not in plan.topic.lower()


def test_a_table_or_figure_named_by_number():
    plan = plan_question("What is in Table 2 of the paper?", [])
    assert (plan.caption_ref, plan.intent) == ("table 2", "summary") and "Table" not in plan.topic
    assert plan_question("What does Fig. 3 show?", []).caption_ref == "figure 3"
    assert plan_question("Which tables are in the paper?", []).caption_ref == ""


def test_the_noun_a_list_asks_for():
    assert listed_noun("What are the main challenges for China's cultural exports?") == "challenges"
    assert listed_noun("Which export markets do China's cultural industries reach?") == "markets"
    assert listed_noun("What is the export value?") == ""


def test_how_a_question_wants_its_answer(library):
    plan = lambda q: plan_question(q, library)  # noqa: E731
    assert plan("How many code samples does CodeNet contain?").wants_number
    assert plan("What percentage of problems have test data?").wants_number
    assert not plan("What is knowledge distillation?").wants_number
    assert plan("What is knowledge distillation?").defines == "knowledge distillation"
    whole = plan("What is PAL?")  # the name of a paper: what the paper is
    assert whole.intent == "summary" and whole.papers == ("pal",) and whole.sections == ("abstract", "introduction", "conclusion")
    assert plan("Which baselines does PAL compare against?").intent == "list"  # compared with what: a list
    assert plan("What improvements does BERT bring compared to prior models?").intent == "comparison"


def test_intents_map_to_sections(library):
    plan = lambda q: plan_question(q, library)  # noqa: E731
    assert set(plan("What does Shang and Liu's paper conclude?").sections) >= {"conclusion", "findings"}
    assert "methodology" in plan("How was the HellaSwag dataset built?").sections
    assert plan("What are the main contributions of PAL?").sections == ("abstract", "introduction", "conclusion")
    assert plan("Who are the authors of the BERT paper?").sections == ("front matter",)
    assert plan("Summarize the BERT paper").sections == ("abstract", "introduction", "conclusion")  # the whole paper
    assert plan("Summarize the SWOT analysis of Belarus's cultural industry").sections == ()  # its headings decide
    assert plan("What strategies do the papers propose?").sections == ()
    assert "limitations" in plan("What are the limitations of PAL?").sections
    assert "future work" in plan("What future work does DistilBERT suggest?").sections
    assert all(plan_question(q, library).intent in INTENTS for q in ("?", "BERT", "Tell me everything"))


@pytest.mark.parametrize(
    "question, sides",
    [
        ("How does Belarus's cultural industry compare with China's?", ("Belarus", "China")),
        ("Compare DistilBERT and BERT", ("DistilBERT", "BERT")),
        ("BERT vs DistilBERT: which is faster?", ("BERT", "DistilBERT")),
        ("How does DistilBERT differ from BERT in size?", ("DistilBERT", "BERT")),
        ("What is the difference between fine-tuning and feature-based approaches?", ("fine-tuning", "feature-based approaches")),
        ("Compare the export strategies of China with those of Belarus", ("China", "Belarus")),
    ],
)
def test_comparison_sides(question, sides):
    assert comparison_sides(question) == sides


def test_plan_of_a_comparison(library):
    plan = plan_question("How does Belarus's cultural industry compare with China's?", library)
    assert plan.intent == "comparison" and plan.comparison_sides == ("Belarus", "China")
    assert plan.topic == "Belarus cultural industry China"
    assert plan_question("What is the export value?", library).comparison_sides == ()


def test_topic_drops_the_reference_and_the_intent_words(library):
    assert plan_question("What does Shang and Liu's paper conclude?", library).topic == ""
    assert plan_question("What risks of AI are mentioned?", library).topic == "risks AI"
    paths = plan_question("What paths do Shang and Liu propose for internationalization?", library)
    assert paths.intent == "list" and paths.topic == "paths internationalization"
    assert plan_question("How was the HellaSwag dataset built?", library).topic == "dataset"
    assert plan_question("What does bert.pdf say about masking?", library).topic == "masking"


def test_headings_matching_the_topic(real, library):
    shang = next(paper for paper, _ in real if paper.paper_id.startswith("shang"))
    headings = list(dict.fromkeys(r.section for r in shang.regions if r.section))
    plan = plan_question("What paths do Shang and Liu propose for internationalization?", library)
    matched = match_headings(plan, headings)
    assert matched and matched[0].startswith("3. The Development Path")
    assert not any(h.startswith(("3.1", "3.2", "2.")) for h in matched)
    # "international" and "internationalization" stem apart; the stems' shared prefix joins them
    plan = plan_question("What strategies do the papers propose for China's cultural industry to go international?", library)
    assert any(h.startswith("3. The Development Path") for h in match_headings(plan, headings))


def test_a_word_in_every_heading_picks_none():
    headings = ["1. Cultural Policy", "2. Cultural Trade", "3. Cultural Heritage"]
    assert match_headings(plan_question("What about cultural trade?", []), headings) == ["2. Cultural Trade"]
    assert match_headings(plan_question("What is cultural?", []), headings) == []
    assert match_headings(plan_question("What is the export value?", []), headings) == []


def test_section_headings_of_an_intent(real, library):
    mao = next(paper for paper, _ in real if paper.paper_id.startswith("mao"))
    headings = list(dict.fromkeys(r.section for r in mao.regions if r.section))
    conclusion = section_headings(plan_question("What does Mao conclude?", library), headings)
    assert any("Conclusion" in h for h in conclusion) and any("Findings" in h for h in conclusion)
    assert not any("Literature" in h for h in conclusion)
    method = section_headings(plan_question("How did Mao collect the data?", library), headings)
    assert any("Methodology" in h for h in method) and any("Data Collection" in h for h in method)
    assert section_headings(plan_question("Who wrote it?", library), headings) == []  # front matter is no heading


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


def test_plan_of_a_chinese_question_keeps_latin_names(library):
    plan = plan_question("BERT论文的作者是谁？", library)
    assert plan.language == "zh" and plan.papers == ("bert",)


def test_a_title_written_out_names_its_paper_though_another_title_shares_most_of_its_words(library):
    """The two shipped papers' titles share "the development of the cultural industry ... Belt
    and Road": title words alone named neither, so a question quoting one title in full searched
    both and answered from the title's words. Written out (quoted or not, any case), a title
    names its paper; a question using a few of its words names none."""
    from culture_rag.answer.naming import resolve_papers

    shang = _id(library, "shang")
    quoted = 'In the paper "On the International Development of Cultural Industry in the Belt and Road Initiative", what strategies are proposed?'
    assert resolve_papers(quoted, library).papers == (shang,)
    plain = "on the international development of cultural industry in the belt and road initiative: which strategies?"
    assert resolve_papers(plain, library).papers == (shang,)
    assert resolve_papers("What is the international development of cultural industry?", library).papers == ()
    assert resolve_papers("What do the papers say about the Belt and Road Initiative?", library).papers == ()
