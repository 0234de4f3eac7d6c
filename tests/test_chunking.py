from __future__ import annotations

import re
from functools import lru_cache

import pytest
from conftest import ARAGOG
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from culture_rag.embed.embedder import packaged_model_dir, token_windows
from culture_rag.ingest.chunking import chunk_paper, split_sentences
from culture_rag.ingest.parsed import Paper, Region


class RealTokenizer:
    """The packaged model's own tokenizer, without loading the model."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(packaged_model_dir()))

    def count(self, texts):
        return [len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def windows(self, text, max_tokens):
        return token_windows(self.tok, text, max_tokens)


@lru_cache(maxsize=1)
def tokenizer() -> RealTokenizer:
    return RealTokenizer()


def make_paper(text: str, sections: bool = False) -> Paper:
    regions = (Region(0, len(text), section="Intro" if sections else None, page=None if sections else 1),)
    return Paper("p", "p.txt", "A title", (), "txt", text, regions, "hash")


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12)
texts = st.lists(
    st.one_of(words, st.sampled_from([". ", "\n", "\n\n", "\t", " ", "Dr. ", "e.g. ", "3.5 ", "图书馆", "—"])),
    min_size=1,
    max_size=400,
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, max_tokens=st.integers(8, 254), overlap=st.integers(0, 60))
@example(text="\x1b0:0:0:0:0", max_tokens=8, overlap=0)  # a character the tokenizer drops, at a cut
@example(text="0:0:0:0:0A0S0000000:0:0000", max_tokens=10, overlap=0)  # a piece that takes more word pieces alone than in place
def test_chunk_invariants_on_arbitrary_text(text, max_tokens, overlap):
    tok = tokenizer()
    paper = make_paper(text)
    chunks = chunk_paper(paper, tok, max_tokens, min(overlap, max_tokens // 2), limit=254)
    for c in chunks:
        # offsets point to the chunk's own text
        assert paper.text[c.start : c.end] == c.text
        # nothing exceeds the limits, measured with the model's tokenizer on the real strings
        assert tok.count([c.text])[0] <= max_tokens
        assert tok.count([c.embed_text])[0] <= 254
        for s in c.sentences:
            assert c.start <= s.start < s.end <= c.end
    # chunks cover the text: every non-space character lies in some chunk
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start : c.end] = [True] * (c.end - c.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing
    # ids are stable
    again = chunk_paper(paper, tok, max_tokens, min(overlap, max_tokens // 2), limit=254)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]


def test_overlap_repeats_whole_sentences():
    text = " ".join(f"Sentence number {i} talks about the cultural industry and trade." for i in range(60))
    chunks = chunk_paper(make_paper(text), tokenizer(), 60, 20)
    assert len(chunks) > 3
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # overlap
        assert re.match(r"Sentence number \d+", b.text)


def test_a_sentence_longer_than_the_window_is_cut_not_truncated():
    text = "word " * 1000
    chunks = chunk_paper(make_paper(text.strip()), tokenizer(), 254, 0)
    assert sum(c.end - c.start for c in chunks) >= len(text.strip()) - len(chunks)
    assert all(tokenizer().count([c.text])[0] <= 254 for c in chunks)


def test_table_rows_stay_whole():
    text = "Industry\tGrowth\tValue\nMedia\t7% CAGR\t$5 billion\nFilm\t12% CAGR\t$10 billion"
    spans = split_sentences(text)
    assert [text[s.start : s.end] for s in spans] == text.split("\n")


def test_sections_are_not_mixed_in_one_chunk():
    text = "Intro sentence one is here.\nMethods sentence two is here."
    cut = text.index("Methods")
    paper = Paper("p", "p.md", "T", (), "md", text, (Region(0, cut, section="Intro"), Region(cut, len(text), section="Methods")), "h")
    chunks = chunk_paper(paper, tokenizer(), 200, 20)
    assert [c.section for c in chunks] == ["Intro", "Methods"]
    assert chunks[1].context == "Methods"


def _real_chunks(path):
    from culture_rag.ingest.metadata import read_metadata_file
    from culture_rag.ingest.papers import read_paper

    paper = read_paper(path, meta=read_metadata_file(path.parent).get(path.name))
    return paper, chunk_paper(paper, tokenizer(), 200, 40, limit=254)


@pytest.mark.skipif(not ARAGOG.is_dir(), reason="../shared/pdfs/aragog is missing")
def test_pdf_chunks_carry_pages_sections_and_roles():
    paper, chunks = _real_chunks(ARAGOG / "bert.pdf")
    conclusion = [c for c in chunks if c.section == "6 Conclusion"]
    assert conclusion and all(c.page_start == 9 and c.heading_path == ("6 Conclusion",) for c in conclusion)
    assert any(c.heading_path == ("3 BERT", "3.1 Pre-training BERT") for c in chunks)
    refs = [c for c in chunks if c.section == "References" and c.role != "heading"]
    assert refs and all(c.role == "reference" and {s.role for s in c.sentences} == {"reference"} for c in refs)
    stamp = next(s for c in chunks for s in c.sentences if c.sentence_text(s).startswith("arXiv:1810.04805"))
    assert stamp.role == "boilerplate"
    assert chunks[0].role == "front" and "Jacob Devlin" in chunks[0].text


def test_references_and_quoted_text_never_share_a_chunk_with_the_papers_own():
    from conftest import CORPUS

    for path in sorted(CORPUS.glob("*.[tm][xd]*")):
        _, chunks = _real_chunks(path)
        for c in chunks:
            groups = {s.role if s.role in ("reference", "quoted", "front") else "own" for s in c.sentences if s.role != "heading"}
            assert len(groups) <= 1, (path.name, c.text[:80])
    _, chunks = _real_chunks(CORPUS / "mao-cultural-industry-economic-market-in-china-and-belarus-under-the-belt-and-road.txt")
    front = " ".join(c.text for c in chunks if c.role == "front")
    assert "Yuqi Mao" in front and "Belarusian State University" in front


def test_a_two_by_two_grid_reads_cell_by_cell_with_its_headers():
    from culture_rag.ingest.chunking import table_cells
    from conftest import CORPUS

    _, chunks = _real_chunks(CORPUS / "mao-cultural-industry-economic-market-in-china-and-belarus-under-the-belt-and-road.txt")
    cells = [cell for c in chunks for i in range(len(c.sentences)) for cell in (table_cells(c, i) or [])]
    swot = {cell.split(":")[0]: cell for cell in cells if cell.split(":")[0] in ("Strengths", "Weaknesses", "Opportunities", "Threats")}
    assert sorted(swot) == ["Opportunities", "Strengths", "Threats", "Weaknesses"]
    assert swot["Threats"].startswith("Threats: Competition from other BRI countries in cultural exports; Cultural misrepresentation")
    assert "; Emerging creative industries (literature, music); Government support" in swot["Strengths"]
    assert "Film, Export Value (2020): $10 billion" in cells  # a one-header table: the first column names the row
    assert "Country: China" not in cells and "China's \"Going Out\" Strategy, Country: China" in cells
