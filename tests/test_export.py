"""Export: answers and conversations as Markdown with one reference list, cited papers as BibTeX."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, make_settings
from pybtex.database import parse_string

from culture_rag import Assistant
from culture_rag.serve.export import ExportedAnswer, Reference, Source, answer_markdown, bibtex, cited_papers, conversation_markdown
from culture_rag.serve.serialize import answer_json

QUESTIONS = ("What is the Belt and Road Initiative?", "Which film industries does Belarus face fierce competition from?")


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    from fakes import HashEmbedder

    tmp = tmp_path_factory.mktemp("export")
    shutil.copytree(CORPUS, tmp / "corpus")
    toml = tmp / "corpus" / "papers.toml"
    toml.write_text(toml.read_text().replace('authors = ["Yuqi Mao"]', 'authors = ["Yuqi Mao"]\nyear = 2024\ndoi = "10.1000/m_1"'))
    assistant = Assistant(make_settings(tmp), embedder=HashEmbedder())
    assistant.build(tmp / "corpus")
    found = [assistant.ask(q) for q in QUESTIONS]
    assert all(a.answered and a.citations for a in found)
    return found


def markers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"(?<!\\)\[(\d+)\]", text)]


def split(markdown: str) -> tuple[str, list[tuple[int, str, str]]]:
    """(body, [(number, reference line, quote)]) of an exported answer."""
    body, _, refs = (re.split(r"^(#+ References)\n", markdown, flags=re.M) + ["", ""])[:3]
    entries = re.findall(r"^(\d+)\. (.+)\n   > “(.*)”$", refs, re.M)
    return body, [(int(n), line, quote) for n, line, quote in entries]


def test_answer_markdown_numbers_match_the_markers(answers):
    for answer in answers:
        body, refs = split(answer_markdown(answer))
        used = markers(body)
        assert used and [n for n, _, _ in refs] == list(range(1, len(refs) + 1)) == sorted(set(used))
        quotes = {" ".join(c.quote.split()) for c in answer.citations}
        for _n, line, quote in refs:
            assert re.sub(r"\\(.)", r"\1", quote) in quotes
            assert "p. " in line or "§ " in line  # page or section
        assert body.startswith(f"# {answer.question}")


def test_the_json_the_app_keeps_exports_the_same_text(answers):
    for answer in answers:
        assert answer_markdown(answer_json(answer)) == answer_markdown(answer)
        assert ExportedAnswer.of(answer_json(answer)) == ExportedAnswer.of(answer)


def test_a_conversation_has_one_reference_list_and_repeats_get_one_number(answers):
    first, second = answers
    markdown = conversation_markdown([first, second, first])
    body, refs = split(markdown)
    assert markdown.startswith("# Conversation") and body.count("\n## ") == 3
    keys = {(c.paper.paper_id, " ".join(c.quote.split())) for a in answers for c in a.citations}
    assert len(refs) == len(keys)  # the third turn repeats the first: nothing new in the list
    assert sorted(set(markers(body))) == [n for n, _, _ in refs] == list(range(1, len(keys) + 1))
    turns = re.split(r"\n## ", body)[1:]
    assert markers(turns[0]) == markers(turns[2])  # the same citations, the same numbers


def test_the_reference_line_carries_year_and_doi(answers):
    markdown = conversation_markdown(answers)
    mao = [line for _, line, _ in split(markdown)[1] if "Yuqi Mao" in line]
    assert mao and all("(2024)" in line and line.endswith("<https://doi.org/10.1000/m_1>") for line in mao)


def test_document_text_cannot_make_markdown():
    reference = Reference(1, Source("p", "T_1 <i>", ("A*B",)), "p. 1", None, "[2] `code` <script>")
    out = answer_markdown(ExportedAnswer("# <b>q</b>", "*bold* [link](http://x) [1]", True, (reference,)))
    assert "<b>" not in out and "<script>" not in out and "[link](" not in out and "`code`" not in out
    assert markers(out) == [1]  # the quote's "[2]" is escaped, not a marker


def test_bibtex_parses_back_with_its_fields(answers):
    papers = cited_papers(answers)
    assert len(papers) == len({c.paper.paper_id for a in answers for c in a.citations})
    parsed = parse_string(bibtex(papers), "bibtex")
    assert len(parsed.entries) == len(papers)
    for source, (key, entry) in zip(papers, parsed.entries.items()):
        assert entry.fields["title"] == source.title
        assert [str(p) for p in entry.persons["author"]] == [
            ", ".join(reversed(name.rsplit(" ", 1))) for name in source.authors
        ]
        assert key.startswith(f"{source.authors[0].split()[-1].lower()}{source.year or ''}")
    mao = next(e for e in parsed.entries.values() if e.fields["title"].startswith("Research on"))
    assert mao.type == "misc" and mao.fields["year"] == "2024" and mao.fields["doi"] == "10.1000/m_1"


def test_bibtex_keys_escapes_and_entry_types():
    sources = [
        Source("a", "BERT: Pre-training of Deep Transformers", ("Jacob Devlin", "Ming-Wei Chang"), 2018, None, "1810.04805"),
        Source("b", "On Risk & Return: 50% of {all} $5 a_b #1 ~x^2 back\\slash in Zürich", ("José Müller",), 2019,
               "10.1000/x_y", venue="Journal of Finance"),
        Source("c", "BERT again", ("J. Devlin",), 2018, venue="Proceedings of the Conference on Things"),
        Source("d", "The Untitled", ()),
    ]
    text = bibtex(sources)
    parsed = parse_string(text, "bibtex")
    assert list(parsed.entries) == ["devlin2018bert", "muller2019risk", "devlin2018berta", "anonuntitled"]
    a, b, c, d = parsed.entries.values()
    assert (a.type, a.fields["eprint"], a.fields["archiveprefix"], a.fields["title"][:6]) == ("misc", "1810.04805", "arXiv", "{BERT}")
    assert " and " not in str(a.persons["author"][0]) and len(a.persons["author"]) == 2
    assert (b.type, b.fields["journal"], b.fields["doi"]) == ("article", "Journal of Finance", "10.1000/x_y")
    title = b.fields["title"]
    assert not re.search(r"(?<!\\)[&%$#_]", title)  # every TeX special character escaped
    assert r"\{all\}" in title and "Zürich" in title and r"\textbackslash{}" in title
    assert c.type == "inproceedings" and c.fields["booktitle"].startswith("Proceedings")
    assert "author" not in d.persons and "year" not in d.fields
    assert bibtex(sources) == text  # stable


@pytest.mark.slow
def test_cli_ask_exports_markdown_and_bibtex_with_the_real_model(tmp_path):
    shutil.copytree(CORPUS, tmp_path / "corpus")
    cli = [str(Path(sys.executable).with_name("culture-rag"))]
    index = str(tmp_path / "index")
    subprocess.run([*cli, "build", str(tmp_path / "corpus"), "--index", index, "--json"], check=True, capture_output=True)
    bib = tmp_path / "cited.bib"
    result = subprocess.run(
        [*cli, "ask", QUESTIONS[1], "--index", index, "--format", "markdown", "--bibtex", str(bib)],
        capture_output=True, text=True, check=True,
    )
    body, refs = split(result.stdout)
    assert body.startswith(f"# {QUESTIONS[1]}") and refs
    assert sorted(set(markers(body))) == [n for n, _, _ in refs] == list(range(1, len(refs) + 1))
    entries = parse_string(bib.read_text(), "bibtex").entries
    assert entries and all(e.fields["title"] for e in entries.values())
    assert {str(p) for e in entries.values() for p in e.persons["author"]} <= {"Mao, Yuqi", "Shang, Huixia", "Liu, Hui"}
    as_json = subprocess.run([*cli, "ask", QUESTIONS[1], "--index", index, "--json"], capture_output=True, text=True, check=True)
    assert as_json.stdout.lstrip().startswith("{")
    scoped = subprocess.run(
        [*cli, "ask", QUESTIONS[1], "--index", index, "--author", "Nobody Here"], capture_output=True, text=True
    )
    assert scoped.returncode == 2 and "no indexed paper matches --author 'Nobody Here'" in scoped.stderr
