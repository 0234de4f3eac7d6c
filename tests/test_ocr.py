"""Scanned pages read by OCR (Debian's Tesseract), and what happens without it. Real files of
../shared/pdfs/robustness, the real contained parser and real Tesseract; the fake embedder
keeps it fast. The words asserted were read off the rendered pages by eye."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROBUSTNESS, make_settings

from culture_rag import Assistant
from culture_rag.ingest.ocr import OcrOptions, read_scanned_pages
from culture_rag.ingest.pdf import pdfium_text
from culture_rag.serve.serialize import hit_json, paper_json

CHINESE_SCAN = ROBUSTNESS / "corrupt" / "malformed-from-issue-932.pdf"  # a scanned signature page; text layer "2021 3 31"
BOOK_SCAN = ROBUSTNESS / "image_or_scanned" / "Seige_of_Vicksburg_Sample_OCR.pdf"  # a scanned book with an OCR layer
TEXT_PDF = ROBUSTNESS / "good" / "crazyones-pdfa.pdf"

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (make setup)")


def image_only_copy(source: Path, target: Path, pages: int) -> Path:
    """The scan's pixels without its text layer: each page rendered at 200 dpi and placed as
    the only object of a new page, as a scanner without OCR would write it."""
    import pypdfium2 as pdfium

    src = pdfium.PdfDocument(source)
    out = pdfium.PdfDocument.new()
    for i in range(pages):
        page = src[i]
        width, height = page.get_size()
        bitmap = page.render(scale=200 / 72, grayscale=True)
        new_page = out.new_page(width, height)
        image = pdfium.PdfImage.new(out)
        image.set_bitmap(bitmap)
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        new_page.insert_obj(image)
        new_page.gen_content()
    out.save(target)
    return target


def only(report):
    (outcome,) = report.outcomes
    return outcome


@needs_tesseract
def test_a_chinese_scan_is_read_in_chinese_and_found(tmp_path, fake_embedder):
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    outcome = only(assistant.add([CHINESE_SCAN]))
    assert outcome.status == "indexed", outcome
    (info,) = assistant.papers()
    assert info.ocr_pages == (1,)
    text = " ".join(c.text for c in assistant.snapshot.chunks)
    for words in ("重庆万州经济技术开发", "有限公司", "签字页", "本页无正文", "2021"):
        assert words in text, (words, text[:300])
    hits = assistant.search("有限公司 签字页", k=3)
    assert hits and hits[0].paper.paper_id == info.paper_id
    assert hit_json(hits[0])["ocr"] is True and paper_json(info)["ocr_pages"] == [1]


@needs_tesseract
def test_an_english_scan_without_text_layer_is_read_with_word_boxes(tmp_path):
    scan = image_only_copy(BOOK_SCAN, tmp_path / "vicksburg-scan.pdf", pages=2)
    data = scan.read_bytes()
    raw = pdfium_text(scan, data, None)
    assert not any(p.strip() for p in raw.pages), "the copy must have no text layer"
    announced = []
    text, pages = read_scanned_pages(scan, data, None, raw, OcrOptions(), announced.append)
    assert announced == [2] and [p.page for p in pages] == [1, 2]
    assert {p.language for p in pages} == {"eng"}, "script detection reads Latin script as English"
    first = text.pages[0]
    for word in ("Johnston", "fifty", "thousand", "Potomac", "Pemberton", "mortar", "Vicksburg"):
        assert word in first, (word, first[:400])
    width, height = 432, 648  # the page's size in points
    for line in pages[0].lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, line
        assert line.words[-1][0] == len(line.text) and all(x0 <= w[1] < w[2] <= x1 for w in line.words), line
    header = next(ln for ln in pages[0].lines if "SIEGE" in ln.text)
    assert header.box[3] < 0.1 * height, "the running head is at the top of the page"
    johnston = next(ln for ln in pages[0].lines if "Johnston" in ln.text)
    assert johnston.box[2] < 0.6 * width, "that line runs beside the picture, in the left half"


@needs_tesseract
def test_ocr_pages_get_a_time_budget_of_their_own(tmp_path, fake_embedder):
    """1 s is plenty for parsing a one-page file and too little for OCR: the page budget
    (ocr_page_timeout_s) is added for each scanned page."""
    assistant = Assistant(make_settings(tmp_path, parse_timeout_s=1.0), embedder=fake_embedder)
    outcome = only(assistant.add([CHINESE_SCAN]))
    assert outcome.status == "indexed", outcome
    assert outcome.seconds > 1.0, "OCR of the page (script detection and reading) takes seconds"

    tight = Assistant(make_settings(tmp_path / "tight", ocr_page_timeout_s=0.05), embedder=fake_embedder)
    outcome = only(tight.add([CHINESE_SCAN]))
    assert outcome.status in ("ocr_failed", "timeout"), outcome
    assert "OCR_PAGE_TIMEOUT_S" in outcome.detail


def test_without_tesseract_scans_need_ocr_and_nothing_indexed_is_lost(tmp_path, fake_embedder, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(TEXT_PDF, corpus / TEXT_PDF.name)
    with_ocr = shutil.which("tesseract") is not None
    if with_ocr:  # the scan is indexed by OCR first, so that its loss would show
        shutil.copy(CHINESE_SCAN, corpus / CHINESE_SCAN.name)
    built = Assistant(make_settings(tmp_path), embedder=fake_embedder).build(corpus)
    assert built.count("indexed") == len(list(corpus.iterdir())), built.outcomes

    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # the parser process inherits it: no tesseract
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    rebuilt = assistant.build(corpus)
    assert {o.status for o in rebuilt.outcomes} == {"unchanged"}, rebuilt.outcomes
    scan = tmp_path / "new-scan.pdf"
    shutil.copy(CHINESE_SCAN, scan)
    outcome = only(assistant.add([scan]))
    assert outcome.status == "needs_ocr", outcome
    assert "tesseract-ocr" in outcome.detail and "scanned" in outcome.detail
    assert not (assistant.corpus_dir / scan.name).exists(), "a refused file is not kept"
    kept = {p.source for p in assistant.papers()}
    assert kept == {p.name for p in corpus.iterdir()}
    hit = assistant.search("Here's to the crazy ones", k=1)[0]
    assert hit.paper.source == TEXT_PDF.name and hit_json(hit)["ocr"] is False


def test_ocr_off_reports_scans_as_needing_ocr(tmp_path, fake_embedder):
    assistant = Assistant(make_settings(tmp_path, ocr=False), embedder=fake_embedder)
    outcome = only(assistant.add([CHINESE_SCAN]))
    assert outcome.status == "needs_ocr", outcome
    assert "CULTURE_RAG_OCR" in outcome.detail
    # A page whose only content is a word of text is no scan: it stays "no extractable text".
    stamp = only(assistant.add([ROBUSTNESS / "corrupt" / "bad-token-startxref.pdf"]))
    assert stamp.status == "no_text", stamp
