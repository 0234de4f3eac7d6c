from __future__ import annotations

import pytest
from conftest import ARAGOG, ROBUSTNESS

from culture_rag.errors import EncryptedPdfError, IngestError
from culture_rag.ingest.cleaning import clean_text
from culture_rag.ingest.papers import paper_id_for, parse_paper, read_paper
from culture_rag.ingest.parsed import locate


def test_clean_text_rejoins_hyphens_and_drops_control_characters():
    raw = "The cul-\ntural indus\x00try \x07is  grow-\ning.\r\nNext ﬁeld."
    assert clean_text(raw, join_lines=True) == "The cultural industry is growing. Next field."


def test_clean_text_keeps_paragraph_breaks_when_joining_lines():
    assert clean_text("line one\nline two\n\n\n\nnew para", join_lines=True) == "line one line two\n\nnew para"


def test_markdown_sections_and_offsets():
    md = b"# Title Here\n\nIntro text that is long enough to count as real text.\n\n## 2. Methods\n\nWe **measured** things with care and patience.\n"
    paper = parse_paper("x.md", md)
    assert paper.kind == "md"
    assert "**" not in paper.text and "#" not in paper.text
    start = paper.text.index("We measured")
    assert locate(paper.regions, start, start + 5)[2] == "2. Methods"


def test_text_numbered_headings_become_sections():
    txt = b"Some title\n\n1. Introduction\n\nThe first section says something about culture and trade.\n\n2.1 Literature Review\n\nScholars have discussed cultural industries for decades now.\n"
    paper = parse_paper("x.txt", txt)
    pos = paper.text.index("Scholars")
    assert locate(paper.regions, pos, pos + 3)[2] == "2.1 Literature Review"


@pytest.mark.parametrize(
    "data",
    [
        "Café culture in Minsk: résumé of policy, naïve façade.".encode("utf-16"),
        "Café culture in Minsk: résumé of policy, naïve façade, and ﬁnal words.".encode("latin-1", "ignore"),
        "\ufeffCafé culture in Minsk: résumé of policy, naïve façade.".encode("utf-8"),
    ],
)
def test_odd_encodings_decode(data):
    paper = parse_paper("enc.txt", data)
    assert "Café culture in Minsk" in paper.text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"   \n\n  ", "empty"),
        ("nul.txt", b"\x00\x01\x02\x00" * 500, "binary"),
        ("short.txt", b"hi", "no_text"),
        ("doc.pdf", b"PK\x03\x04zipzipzip", "corrupt"),
        ("text.txt", b"%PDF-1.4 pretending", "mismatch"),
    ],
)
def test_bad_inputs_name_the_file(name, data, reason):
    with pytest.raises(IngestError) as info:
        parse_paper(name, data)
    assert info.value.reason == reason
    assert name in str(info.value)


def test_pdf_keeps_page_numbers_and_title():
    paper = read_paper(ARAGOG / "distilbert.pdf")
    assert paper.kind == "pdf" and paper.n_pages == 5
    pages = [r.page for r in paper.regions]
    assert sorted(set(pages)) == [1, 2, 3, 4, 5] and pages == sorted(pages)  # several regions a page, in order
    assert paper.title.startswith("DistilBERT, a distilled version of BERT")
    pos = paper.text.index("knowledge distillation")
    first, last, _ = locate(paper.regions, pos, pos + 10)
    assert first == last and 1 <= first <= 5


def test_bold_words_opening_a_paragraph_are_its_heading():
    """DistilBERT sets "Data and compute power" in bold before its paragraph (LaTeX's \\paragraph):
    the paragraph sits under it, inside its numbered section, and no sentence starts with it. A
    bold subject running on in lowercase ("Other compression techniques have been studied") is
    no heading. The space after a heading became its line break, so the source view still finds
    the layout line (test_sourceview's highlights on DistilBERT cover it)."""
    from culture_rag.ingest import pdf

    paper = read_paper(ARAGOG / "distilbert.pdf")
    pos = paper.text.index("We train DistilBERT on the same corpus")
    assert paper.text[pos - len("Data and compute power") - 1 : pos] == "Data and compute power\n"
    region = next(r for r in paper.regions if r.start <= pos < r.end)
    assert region.heading_path == ("3 DistilBERT: a distilled version of BERT", "Data and compute power")
    assert "Other compression techniques have been studied" in paper.text
    raw = pdf.pdfium_text("distilbert.pdf", (ARAGOG / "distilbert.pdf").read_bytes(), None)
    assert "Data and compute power" in raw.run_in[2] and not any(h.startswith("Other compression") for p in raw.run_in for h in p)


def test_a_pdf_without_a_title_entry_is_titled_by_its_largest_upright_font():
    """BERT's PDF has no /Title; the largest text of its first page is the arXiv stamp, set
    sideways in the margin, and the title comes next. Producers' placeholders are no titles."""
    from culture_rag.ingest import pdf
    from culture_rag.ingest.pdfpaper import _pdf_meta, _plausible_title

    raw = pdf.pdfium_text("bert.pdf", (ARAGOG / "bert.pdf").read_bytes(), None)
    assert raw.title == "" and raw.title_lines == ("BERT: Pre-training of Deep Bidirectional Transformers for", "Language Understanding")
    assert _pdf_meta(raw).title == "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
    for placeholder in ("10811.exe", "905_Precinct_NoOU", "Microsoft Word - agenda.docx", "untitled", "arXiv:1810.04805v2 [cs.CL] 24 May 2019"):
        assert not _plausible_title(placeholder), placeholder
    assert _plausible_title("The Crazy Ones")


def test_running_headers_are_dropped():
    pages = "\f".join(f"Journal of Things Vol. {i}\nBody text of page {i} talks about trade.\n{i}" for i in range(1, 6))
    from culture_rag.ingest.pdfpaper import _drop_running_lines

    cleaned = _drop_running_lines(pages.split("\f"))
    assert all("Journal of Things" not in p for p in cleaned)
    assert all("Body text" in p for p in cleaned)


def test_encrypted_pdf_needs_password():
    path = ROBUSTNESS / "encrypted" / "password-example.pdf"
    with pytest.raises(EncryptedPdfError) as info:
        read_paper(path)
    assert "password" in str(info.value) and "password-example.pdf" in str(info.value)
    with pytest.raises(EncryptedPdfError):
        read_paper(path, password="wrong")
    assert read_paper(path, password="test").n_pages == 4


def test_aes_encrypted_pdf_opens_with_password():
    paper = read_paper(ROBUSTNESS / "encrypted" / "r4-aes-user-password.pdf", password="asdfzxcv")
    assert paper.n_pages == 1


def test_pypdf_reads_what_pdfium_refuses(tmp_path):
    import pypdfium2

    from culture_rag.ingest.pdf import pdfium_text

    data = (ROBUSTNESS / "good" / "002-trivial-libre-office-writer.pdf").read_bytes()
    end = data.rindex(b">>\nstartxref")
    damaged = data[:end] + b"\x0c" + data[end + 1 :]  # the trailer's closing ">>" loses a byte
    path = tmp_path / "damaged-trailer.pdf"
    path.write_bytes(damaged)
    with pytest.raises(pypdfium2.PdfiumError):
        pypdfium2.PdfDocument(damaged)
    with pytest.raises(IngestError, match="PDFium cannot open it"):
        pdfium_text(path, damaged, None)
    assert read_paper(path).text == read_paper(ROBUSTNESS / "good" / "002-trivial-libre-office-writer.pdf").text


def test_corrupt_pdf_is_reported():
    with pytest.raises(IngestError) as info:
        read_paper(ROBUSTNESS / "corrupt" / "issue19484_1.pdf")
    assert info.value.reason == "corrupt"


def test_paper_ids_are_safe_slugs():
    assert paper_id_for("../../etc/Ünïcode Paper (v2).PDF") == "unicode-paper-v2"
    assert paper_id_for("....pdf").startswith("paper-")


def test_a_paper_crosses_the_parser_pipe_unchanged():
    import json
    from dataclasses import asdict

    from culture_rag.ingest.parsed import paper_from_dict
    from culture_rag.types import PaperMeta

    paper = read_paper(ARAGOG / "distilbert.pdf", meta=PaperMeta("DistilBERT", ("Victor Sanh",), "Hugging Face"))
    assert paper_from_dict(json.loads(json.dumps(asdict(paper)))) == paper
    assert paper.affiliation == "Hugging Face"


def test_affiliation_in_papers_toml_must_be_text(tmp_path):
    from culture_rag.ingest.metadata import read_metadata_file

    (tmp_path / "papers.toml").write_text('["a.txt"]\ntitle = "T"\naffiliation = ["Uni A", "Lab B"]\n["b.txt"]\naffiliation = 3\n')
    with pytest.raises(IngestError, match="affiliation"):
        read_metadata_file(tmp_path)
    (tmp_path / "papers.toml").write_text('["a.txt"]\ntitle = "T"\naffiliation = ["Uni A", "Lab B"]\n')
    assert read_metadata_file(tmp_path)["a.txt"].affiliation == "Uni A; Lab B"
