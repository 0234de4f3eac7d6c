"""Paper metadata: papers.toml's keys and their checks, what a paper's first page states (DOI,
arXiv identifier, year), and papers.toml edits reaching the index without re-embedding."""

from __future__ import annotations

import json

import pytest
from conftest import ARAGOG, CORPUS, ROBUSTNESS, make_settings

from culture_rag import Assistant, IngestError
from culture_rag.errors import IndexModelMismatch
from culture_rag.ingest.metadata import arxiv_year, found_metadata, front_metadata, normalize_doi, read_metadata_file
from culture_rag.ingest.pdf import PdfText
from culture_rag.ingest.pdfpaper import _pdf_meta
from culture_rag.types import PaperMeta
from culture_rag.ingest.papers import read_paper

MAO = "mao-cultural-industry-economic-market-in-china-and-belarus-under-the-belt-and-road.txt"


def write_toml(folder, text: str) -> None:
    (folder / "papers.toml").write_text(text, encoding="utf-8")


def test_papers_toml_keys_are_read_and_normalized(tmp_path):
    write_toml(
        tmp_path,
        '["a.pdf"]\ntitle = " A Title "\nauthors = ["Ada Lovelace", "Alan Turing"]\nyear = 2019\n'
        'doi = "https://doi.org/10.1080/ABC.2020.1"\naffiliation = "Lab"\nvenue = "Proceedings of X"\n'
        'url = "https://example.org/a"\narxiv = "arXiv:1810.04805v2"\n'
        '["b.txt"]\nauthors = "Yuqi Mao"\ndoi = "doi:10.1000/x_y"\n',
    )
    meta = read_metadata_file(tmp_path)
    a = meta["a.pdf"]
    assert (a.title, a.authors, a.year, a.affiliation, a.venue, a.url) == (
        "A Title", ("Ada Lovelace", "Alan Turing"), 2019, "Lab", "Proceedings of X", "https://example.org/a"
    )
    assert a.doi == "10.1080/abc.2020.1" and a.arxiv_id == "1810.04805"
    assert meta["b.txt"].authors == ("Yuqi Mao",) and meta["b.txt"].doi == "10.1000/x_y"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ('year = "2019"', "year"),
        ("year = 2019.5", "year"),
        ("year = true", "year"),
        ("year = 20190", "year"),
        ('doi = "10.12/abc"', "doi"),
        ('doi = "not a doi"', "doi"),
        ("doi = 10", "doi"),
        ('arxiv = "18.10"', "arxiv"),
        ("authors = [1, 2]", "authors"),
        ('title = ""', "title"),
        ('url = "example.org"', "url"),
        ("yaer = 2019", "yaer"),
    ],
)
def test_a_bad_value_in_papers_toml_names_the_file_and_the_field(tmp_path, entry, field):
    write_toml(tmp_path, f'["a.pdf"]\n{entry}\n')
    with pytest.raises(IngestError) as info:
        read_metadata_file(tmp_path)
    assert info.value.path == str(tmp_path / "papers.toml")
    assert f"['a.pdf'] {field}:" in str(info.value) and "papers.toml" in str(info.value)


def test_dois_and_arxiv_years():
    assert normalize_doi("https://dx.doi.org/10.1145/3292500.3330701") == "10.1145/3292500.3330701"
    assert normalize_doi("10.1145") is None
    assert arxiv_year("2105.12655") == 2021 and arxiv_year("hep-th/9901001") == 1999 and arxiv_year("math/0211159") == 2002


def test_the_arxiv_pdfs_get_identifier_and_year_from_their_stamp():
    """arXiv stamps "arXiv:<id>v<n> [<category>] <date>" on page one; the year is the first
    version's, which the identifier's YYMM gives (not the stamp's date of a later version)."""
    for pdf in sorted(ARAGOG.glob("*.pdf")):
        paper = read_paper(pdf)
        page_one = paper.text[: paper.regions[-1].end]
        stamp = next(line for line in page_one.split("\n") if line.startswith("arXiv:"))
        arxiv_id = stamp.split()[0].removeprefix("arXiv:").rsplit("v", 1)[0]
        assert paper.arxiv_id == arxiv_id, pdf.name
        assert paper.year == 2000 + int(arxiv_id[:2]), pdf.name
        assert paper.doi is None  # none of them prints one


def test_front_matter_publication_lines_win_over_the_arxiv_year_and_citations_do_not_count():
    page = "\n".join(
        [
            "A Study of Things",
            "Ada Lovelace",
            "As shown by (Smith et al., 2015), things matter.",
            "Proceedings of the 57th Annual Meeting, Florence, Italy, July 28 - August 2, 2019.",
            "doi: 10.18653/v1/P19-1001.",
            "arXiv:1811.00001v3 [cs.CL] 2 Feb 2020",
        ]
    )
    meta = front_metadata(page)
    assert (meta.year, meta.doi, meta.arxiv_id) == (2019, "10.18653/v1/p19-1001", "1811.00001")
    assert front_metadata("Title\n© 2021 The Authors. Published by X.").year == 2021
    assert front_metadata("Journal of Econometrics 210 (2019) 1-20\nTitle").year == 2019
    assert front_metadata("Title\nThis journal's view (Smith and Jones, 2015) holds.").year is None
    assert front_metadata("Title\nBERT (Devlin et al., 2019) and arXiv:1810.04805 are cited here.").year is None


@pytest.mark.parametrize(
    "header",
    [
        "arXiv:1907.11692v1 [cs.CL] 26 Jul 2019",
        "Published as a conference paper at ICLR 2020",
        "Proceedings of NAACL-HLT 2019, pages 4171-4186",
        "Journal of Econometrics 210 (2019) 1-20",
        "Preprint. Under review.",
    ],
)
def test_an_arxiv_stamp_a_journal_header_or_a_running_head_is_never_a_title(header):
    """The first page's first line of a few words is the title, unless it says where the paper
    appeared; in a PDF's /Title such a line is no title either."""
    page = f"{header}\nA Robustly Optimized Pretraining Approach\nAda Lovelace, Alan Turing\nAbstract\nWe study things."
    meta = found_metadata(PaperMeta(), page)
    assert meta.title == "A Robustly Optimized Pretraining Approach"
    assert meta.authors == ("Ada Lovelace", "Alan Turing")
    assert _pdf_meta(PdfText(("",), header, "")).title is None
    assert _pdf_meta(PdfText(("",), "A Robustly Optimized Pretraining Approach", "")).title == "A Robustly Optimized Pretraining Approach"


def test_an_identifier_line_under_a_title_is_neither_title_nor_its_continuation():
    """QASPER's Markdown papers put "arXiv: <id>" under the title; read as the title's second
    line, it made every title end in the identifier, and a question naming the paper by its
    title then no longer matched it."""
    page = "Cross-Lingual Adaptation Using Universal Dependencies\narXiv: 2003.10816\nAbstract\nWe describe a method."
    meta = found_metadata(PaperMeta(), page)
    assert meta.title == "Cross-Lingual Adaptation Using Universal Dependencies"
    assert meta.arxiv_id == "2003.10816"


def test_the_arxiv_pdfs_titles_are_their_titles():
    titles = {pdf.name: read_paper(pdf).title for pdf in sorted(ARAGOG.glob("*.pdf"))}
    assert titles["bert.pdf"] == "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
    assert titles["distilbert.pdf"].startswith("DistilBERT, a distilled version of BERT")
    assert not any(t.startswith("arXiv") for t in titles.values()), titles


def test_the_shipped_papers_state_no_year_and_none_is_made_up():
    """Years in their text are of events and of cited works; their DOIs are their references'."""
    for path in sorted(CORPUS.glob("*.*")):
        if path.suffix != ".toml":
            paper = read_paper(path)
            assert (paper.year, paper.doi, paper.arxiv_id) == (None, None, None), path.name


def test_a_pdf_file_date_is_not_taken_for_the_year():
    """/Info dates are the file's: crazyones-pdfa.pdf was saved in 2023, its text is from 1998."""
    import pypdfium2

    path = ROBUSTNESS / "good" / "crazyones-pdfa.pdf"
    assert pypdfium2.PdfDocument(path).get_metadata_dict()["CreationDate"].startswith("D:2023")
    assert read_paper(path).year is None


# --- through the index ------------------------------------------------------------------------


def test_editing_papers_toml_updates_the_library_without_embedding(tmp_path, corpus_copy, fake_embedder):
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus_copy)
    original = next(p for p in assistant.papers() if p.source == MAO)
    # the shipped entry curates the affiliation, which the file's own metadata lacks
    assert original.year is None and original.affiliation and original.found.affiliation is None

    toml = corpus_copy / "papers.toml"
    curated = toml.read_text()
    toml.write_text(curated.replace('authors = ["Yuqi Mao"]', 'authors = ["Yuqi Mao"]\nyear = 2024\ndoi = "10.1000/mao.1"'))
    before = fake_embedder.embedded
    report = assistant.build(corpus_copy)
    assert report.embedded_chunks == 0 and fake_embedder.embedded == before and report.count("unchanged") == 2
    assert report.generation == 2  # a new generation with the new records
    reloaded = Assistant.load(tmp_path / "index", embedder=fake_embedder)
    paper = next(p for p in reloaded.papers() if p.source == MAO)
    assert (paper.year, paper.doi, paper.title) == (2024, "10.1000/mao.1", original.title)
    assert paper.found is not None and paper.found.year is None  # what the file says is kept

    # Without its entry, the paper shows what its file says again: the first page's guess.
    toml.write_text("")
    assistant.build(corpus_copy)
    bare = next(p for p in assistant.papers() if p.source == MAO)
    assert fake_embedder.embedded == before
    assert bare.year is None and bare.doi is None and bare.affiliation is None and bare.found is None
    assert bare.title == read_paper(corpus_copy / MAO).found.title


def test_an_index_of_a_format_before_7_is_refused_then_rebuilt(tmp_path, corpus_copy, fake_embedder):
    """Format 6 papers had no year, DOI or venue: such an index is refused, and built again."""
    from culture_rag.index import MANIFEST_DIGEST, manifest_digest, read_current
    from culture_rag.index.layout import READABLE_FORMATS

    FORMAT = min(READABLE_FORMATS)  # noqa: N806  the oldest readable; one less is refused

    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus_copy)
    path = tmp_path / "index" / read_current(tmp_path / "index") / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = FORMAT - 1
    for record in manifest["papers"]:
        for key in ("year", "doi", "arxiv_id", "venue", "url", "found"):
            record.pop(key)
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexModelMismatch, match=rf"{path}.*index format {FORMAT - 1}.*culture-rag build"):
        Assistant.load(tmp_path / "index", embedder=fake_embedder)
    report = Assistant(make_settings(tmp_path), embedder=fake_embedder).build(corpus_copy)
    assert report.count("indexed") == 2 and report.embedded_chunks == report.total_chunks
