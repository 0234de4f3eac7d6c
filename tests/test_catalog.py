"""The library's filters: author, year or range, title words."""

from __future__ import annotations


import pytest
from conftest import make_settings

from culture_rag import Assistant, QueryError
from culture_rag.index.catalog import parse_years, select_papers
from culture_rag.types import PaperInfo


def paper(pid: str, title: str, authors: tuple[str, ...], year: int | None) -> PaperInfo:
    return PaperInfo(pid, f"{pid}.pdf", title, authors, "pdf", 1, 1, "0" * 64, "2026-01-01T00:00:00Z", "0" * 24, year=year)


LIBRARY = [
    paper("bert", "BERT: Pre-training of Deep Bidirectional Transformers", ("Jacob Devlin", "Kristina Toutanova"), 2018),
    paper("distil", "DistilBERT, a distilled version of BERT", ("Victor SANH", "Thomas Wolf"), 2019),
    paper("zurich", "Über Zürich und die Welt", ("José Müller",), 2021),
    paper("undated", "A paper of unknown date", ("Ada Lovelace",), None),
]


def ids(papers) -> list[str]:
    return [p.paper_id for p in papers]


def test_no_filter_keeps_every_paper_in_order():
    assert ids(select_papers(LIBRARY)) == ["bert", "distil", "zurich", "undated"]


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        ("2019", ["distil"]),
        (2018, ["bert"]),
        ("2018-2019", ["bert", "distil"]),
        ("2018 – 2021", ["bert", "distil", "zurich"]),
        ("2019-", ["distil", "zurich"]),
        ("-2018", ["bert"]),
        ("2020", []),
    ],
)
def test_year_and_ranges(year, expected):
    assert ids(select_papers(LIBRARY, year=year)) == expected  # the undated paper never matches a year


@pytest.mark.parametrize("bad", ["19", "2021-2018", "twenty", "2019-2020-2021", "-"])
def test_a_bad_year_says_how_to_write_one(bad):
    with pytest.raises(QueryError, match="year"):
        parse_years(bad)


def test_authors_by_words_of_one_name_case_and_accents_ignored():
    assert ids(select_papers(LIBRARY, author="devlin")) == ["bert"]
    assert ids(select_papers(LIBRARY, author="Sanh")) == ["distil"]
    assert ids(select_papers(LIBRARY, author="jose muller")) == ["zurich"]
    assert ids(select_papers(LIBRARY, author="Devl")) == ["bert"]  # a prefix of a word
    assert ids(select_papers(LIBRARY, author="evlin")) == []  # not inside a word
    assert ids(select_papers(LIBRARY, author="Jacob Wolf")) == []  # words of one author, not of two


def test_title_words_in_any_order_and_combined_filters():
    assert ids(select_papers(LIBRARY, title="bert")) == ["bert", "distil"]
    assert ids(select_papers(LIBRARY, title="transformer deep")) == ["bert"]
    assert ids(select_papers(LIBRARY, title="zurich")) == ["zurich"]
    assert ids(select_papers(LIBRARY, title="bert", year="2019-2021")) == ["distil"]
    assert ids(select_papers(LIBRARY, title="bert", author="toutanova", year="2019")) == []


def test_a_selection_scopes_the_answer(tmp_path, corpus_copy, fake_embedder):
    """select_papers' ids go to Assistant.ask(papers=...): every cited passage is of them."""
    toml = corpus_copy / "papers.toml"
    toml.write_text(toml.read_text().replace('authors = ["Yuqi Mao"]', 'authors = ["Yuqi Mao"]\nyear = 2024'))
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus_copy)
    chosen = select_papers(assistant.papers(), year="2023-2025")
    assert [p.authors for p in chosen] == [("Yuqi Mao",)] and assistant.papers(year="2023-2025") == chosen
    answer = assistant.ask("What is the Belt and Road Initiative?", papers=ids(chosen))
    assert answer.passages and {h.paper.paper_id for h in answer.passages} == set(ids(chosen))
    # the other paper is found by its author
    other = select_papers(assistant.papers(), author="Shang")
    assert [p.year for p in other] == [None]
