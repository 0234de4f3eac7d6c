"""Region classification: unit rules on small strings, then the real papers (corpus/ and the
aragog PDFs)."""

from __future__ import annotations

from functools import lru_cache

import pytest
from conftest import ARAGOG, CORPUS

from culture_rag.ingest import regions
from culture_rag.ingest.metadata import read_metadata_file
from culture_rag.ingest.papers import read_paper
from culture_rag.ingest.parsed import Locator, locate
from culture_rag.ingest.regions import Line, classify, dominant_role, heading_paths

MAO = "mao-cultural-industry-economic-market-in-china-and-belarus-under-the-belt-and-road.txt"
SHANG = "shang-liu-international-development-of-cultural-industry-in-the-belt-and-road-initiative.md"


def pdf_lines(*pages: list[str]) -> list[Line]:
    out = []
    for number, page in enumerate(pages, start=1):
        for i, text in enumerate(page):
            out.append(Line(text, page=number, page_edge=i < 3 or i >= len(page) - 3))
    return out


BODY_LINE = "This sentence is ordinary body text that runs across the whole column width of a page."


def roles_of(lines, known=()):
    return [label.role for label in classify(lines, known)]


# --- rules on small strings ---------------------------------------------------------------------


def test_arxiv_stamp_copyright_and_preprint_lines_are_boilerplate():
    page = ["A Title of a Paper", "Abstract", BODY_LINE, "1 Introduction", *[BODY_LINE] * 6,
            "arXiv:1810.04805v2 [cs.CL] 24 May 2019", "© 2021 The Authors. Published by Someone.", "Preprint. Under review."]
    labels = roles_of(pdf_lines(page))
    assert labels[-3:] == ["boilerplate"] * 3
    assert labels[4] == "body"


def test_page_numbers_are_boilerplate_only_at_a_page_edge():
    page = ["1 Introduction", BODY_LINE, BODY_LINE, "42", BODY_LINE, BODY_LINE, BODY_LINE, "7"]
    labels = roles_of(pdf_lines(["Title"], page))
    assert labels[-1] == "boilerplate"  # the last line of its page
    assert labels[4] != "boilerplate"  # "42" in the middle of a page is something else's text


def test_numbered_headings_must_continue_the_numbering():
    page = ["1 Introduction", BODY_LINE, "2018. Contextual string embeddings for sequence", "2 Method", BODY_LINE,
            "1. First item of a list in the text", "2.1 Details of the Method", BODY_LINE, "100 Accuracy of the Model",
            "3 Results", BODY_LINE]
    labels = classify(pdf_lines(["Title"], page))
    headings = [lb.heading for lb in labels if lb.heading]
    assert headings == ["1 Introduction", "2 Method", "2.1 Details of the Method", "3 Results"]


def test_heading_paths_nest_by_numbering():
    page = ["1 Introduction", BODY_LINE, "2 Method", BODY_LINE, "2.1 Data", BODY_LINE, "2.1.1 Sources", BODY_LINE,
            "2.2 Model", BODY_LINE, "3 Conclusion", BODY_LINE]
    labels = classify(pdf_lines(["Title"], page))
    paths = heading_paths(labels)
    assert paths[8] == ("2 Method", "2.1 Data", "2.1.1 Sources")
    assert paths[10] == ("2 Method", "2.2 Model")
    assert paths[12] == ("3 Conclusion",)


def test_a_line_that_continues_a_sentence_is_no_heading_nor_caption():
    page = ["1 Introduction", "Results on selected tasks are shown in", "Table 6. In this table, we report the scores",
            "and as described in", "2 Method of Work", BODY_LINE]
    labels = classify(pdf_lines(["Title"], page))
    assert [lb.role for lb in labels[1:]] == ["heading", "body", "body", "body", "body", "body"]


def test_named_sections_references_and_an_appendix_after_them():
    page = ["Introduction", BODY_LINE, "Conclusions", BODY_LINE, "References",
            "Alan Smith and Bo Li. 2018. A study of things. In Proceedings of the Conference,",
            "A. Do as I Can, not as I Say: Grounding Language in", "pages 1-10.",
            "A Additional Details", BODY_LINE]
    labels = classify(pdf_lines(["Title"], page))
    assert [lb.heading for lb in labels if lb.heading] == ["Introduction", "Conclusions", "References", "A Additional Details"]
    assert [lb.role for lb in labels[6:9]] == ["reference"] * 3  # "In Proceedings of" is no venue footer here
    assert labels[-1].role == "body"


def test_letter_headings_only_after_references_or_an_appendix():
    page = ["1 Introduction", "Which ending is right?", "A. Stop for no more than two seconds", "B Another Option Here", BODY_LINE]
    assert roles_of(pdf_lines(["Title"], page))[1:] == ["heading", "body", "body", "body", "body"]


def test_front_matter_title_block_abstract_and_keywords():
    lines = [Line("A Study of Trade"), Line("Jane Doe, John Roe"), Line("Some University, Town"),
             Line("Abstract: This study looks at trade. " * 5), Line("Keywords: trade; culture"),
             Line("1. Introduction"), Line(BODY_LINE)]
    labels = classify(lines)
    assert [lb.role for lb in labels] == ["front"] * 5 + ["heading", "body"]
    assert heading_paths(labels)[4] == ("Abstract",)


def test_known_affiliation_lines_on_the_first_page_are_front():
    page = ["1 Introduction", BODY_LINE, "Department of Cultural Economics, Some Institute", BODY_LINE, BODY_LINE, BODY_LINE]
    labels = roles_of(pdf_lines(["Title", "Abstract", BODY_LINE], page), known=("Department of Cultural Economics",))
    assert labels[5] == "body"  # a known name on page 2 is the paper's text
    labels = roles_of(pdf_lines(["Title", "Abstract", BODY_LINE, *page]), known=("Department of Cultural Economics",))
    assert labels[5] == "front"


def test_markdown_title_lines_are_front_and_levels_nest_unnumbered_headings():
    lines = [Line("Paper Title", md_level=2), Line("Ann Author, Bo Author", md_level=2), Line("Abstract. Text. " * 3),
             Line("Background", md_level=1), Line(BODY_LINE), Line("Details of Data", md_level=2), Line(BODY_LINE)]
    labels = classify(lines)
    assert [lb.role for lb in labels[:3]] == ["front"] * 3
    assert heading_paths(labels)[6] == ("Background", "Details of Data")


def test_a_figure_that_reprints_an_article_is_quoted():
    lines = [Line("2. Data"), Line(BODY_LINE), Line("WORLD"), Line("The role of trade in the world"), Line("By JANE WRITER"),
             Line("The article's own text goes on for a while about trade. " * 4), Line("More of the article. " * 5),
             Line("Figure 1: The role of trade in the world"), Line("The paper's own text resumes here. " * 3)]
    labels = roles_of(lines)
    assert labels[2:7] == ["quoted"] * 5
    assert labels[7:] == ["caption", "body"]
    assert labels[1] == "body"


def test_a_caption_that_repeats_no_line_quotes_nothing():
    lines = [Line("2. Data"), Line(BODY_LINE), Line(BODY_LINE), Line("Figure 1: Overview of the trade data we use")]
    assert roles_of(lines) == ["heading", "body", "body", "caption"]


def test_tab_rows_and_numeric_pdf_rows_are_tables():
    assert roles_of([Line("1. Data"), Line("Name\tValue"), Line("Film\t$10 billion")]) == ["heading", "table", "table"]
    page = ["1 Results", "Model Dev Test", "BERT 84.6/83.4 71.2 90.5", "ELMo 76.4 64.8 79.8", BODY_LINE]
    assert roles_of(pdf_lines(["Title"], page))[3:6] == ["table", "table", "body"]


def test_runs_of_very_short_pdf_lines_are_figure_text():
    page = ["1 Method", BODY_LINE, "for the results shown.", "Token", "Embeddings", "E[CLS] E1 E2", BODY_LINE, "Short line.", BODY_LINE]
    assert roles_of(pdf_lines(["Title"], page))[3:] == ["body", "figure", "figure", "figure", "body", "body", "body"]


def test_dominant_role_ignores_headings_unless_alone():
    assert dominant_role([("heading", 40), ("body", 30)]) == "body"
    assert dominant_role([("heading", 40)]) == "heading"
    assert dominant_role([("caption", 50), ("table", 120), ("body", 20)]) == "table"
    assert dominant_role([]) == "body"


# --- real papers --------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def paper(name: str):
    folder = CORPUS if (CORPUS / name).exists() else ARAGOG
    return read_paper(folder / name, meta=read_metadata_file(CORPUS).get(name))


def regions_with(p, role: str):
    return [r for r in p.regions if r.role == role]


def text_of(p, region) -> str:
    return p.text[region.start : region.end]


needs_pdfs = pytest.mark.skipif(not ARAGOG.is_dir(), reason="../shared/pdfs/aragog is missing")
PDFS = ["bert.pdf", "PAL.pdf", "codenet.pdf", "distilbert.pdf", "hellaswag.pdf"]


@needs_pdfs
@pytest.mark.parametrize("name", PDFS)
def test_every_aragog_pdf_has_front_matter_references_captions_and_its_arxiv_stamp(name):
    p = paper(name)
    refs = regions_with(p, "reference")
    assert refs and all(r.heading_path[-1] in ("References", "12 Bibliography") for r in refs)
    assert sum(r.end - r.start for r in refs) > 2000
    assert regions_with(p, "figure") or name == "distilbert.pdf"  # axis labels, boxes, code listings
    assert any(text_of(p, r).startswith(("Figure 1", "Table 1")) for r in regions_with(p, "caption"))
    assert any(text_of(p, r).startswith("arXiv:") or "\narXiv:" in text_of(p, r) for r in regions_with(p, "boilerplate"))
    front = " ".join(text_of(p, r) for r in regions_with(p, "front"))
    assert p.title.split(":")[0] in front
    assert not any("arXiv:" in text_of(p, r) for r in regions_with(p, "body") if len(text_of(p, r)) < 60)


@needs_pdfs
def test_bert_sections_nest_and_locate_gives_page_and_section():
    p = paper("bert.pdf")
    paths = [r.heading_path for r in regions_with(p, "heading")]
    assert ("6 Conclusion",) in paths
    assert ("3 BERT", "3.1 Pre-training BERT") in paths
    assert ("A Additional Details for BERT", "A.1 Illustration of the Pre-training Tasks") in paths
    pos = p.text.index("Recent empirical improvements due to transfer")
    assert locate(p.regions, pos, pos + 20) == (9, 9, "6 Conclusion")
    # the heading has a line of its own in the text, not run into the paragraph before it
    assert "\n6 Conclusion\nRecent empirical" in p.text
    stamp = p.text.index("arXiv:1810.04805v2")
    assert Locator(p.regions).at(stamp).role == "boilerplate"
    caption = p.text.index("Table 1: GLUE Test results")
    assert Locator(p.regions).at(caption).role == "caption"


@needs_pdfs
def test_pdf_list_items_years_and_figure_numbers_are_not_headings():
    for name in PDFS:
        headings = [r.heading_path[-1] for r in regions_with(paper(name), "heading")]
        assert not [h for h in headings if h[:4].isdigit() or h.startswith(("100 ", "1. PAL", "C T1"))], name


def test_markdown_headings_nest_by_their_numbers():
    p = paper(SHANG)
    paths = {r.heading_path for r in p.regions}
    top = "3. The Development Path of the Cultural Industry Internationalization in the Construction of the Belt and Road Initiative"
    for sub in ("3.1 Strengthen the Top-Level Design", "3.2 Give Full Play to Regional Advantages",
                "3.3 Adhere to the Innovative Development Concept", "3.4 Cultivating Cultural Industry Brands"):
        assert (top, sub) in paths  # Markdown levels differ (##, ###, ####), the numbering decides
    assert ("4. Conclusion",) in paths and ("References",) in paths
    front = " ".join(text_of(p, r) for r in regions_with(p, "front"))
    assert "Huixia Shang, Hui Liu" in front and "Bozhou Vocational and Technical College" in front
    assert not any("Huixia Shang" in h for path in paths for h in path)  # the author line is no heading


def test_reprinted_article_in_a_figure_is_quoted_not_body():
    p = paper(MAO)
    at = Locator(p.regions).at
    assert at(p.text.index("By DAVID BREWER")).role == "quoted"
    assert at(p.text.index("The drivers here are three-fold")).role == "quoted"
    assert at(p.text.index("Secondary sources include")).role == "body"
    assert at(p.text.index("Figure 1: China's strategic role")).role == "caption"
    assert at(p.text.index("Strengths\tWeaknesses")).role == "table"
    assert at(p.text.index("[6] Misiuk")).role == "reference"
    quoted = regions_with(p, "quoted")
    assert len(quoted) == 1 and quoted[0].heading_path == ("3. Research Methodology", "3.2 Data Collection Methods")


def test_text_front_matter_and_curated_affiliation():
    p = paper(MAO)
    assert p.affiliation == "School of Business, Belarusian State University"
    at = Locator(p.regions).at
    for line in ("Yuqi Mao", "School of Business, Belarusian State University, 4 Nezavisimosti", "Abstract: *This study", "Keywords:"):
        assert at(p.text.index(line)).role == "front", line
    abstract = at(p.text.index("Abstract: *This study"))
    assert abstract.heading_path == ("Abstract",)
    assert at(p.text.index("In 2013, China's Belt and Road")).heading_path == ("1. Introduction",)


def test_role_names_are_the_documented_ones():
    assert regions.ROLES == ("front", "heading", "body", "caption", "table", "reference", "boilerplate", "quoted", "figure")
