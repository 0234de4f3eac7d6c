"""The source of a citation: real PDFs of ../shared (BERT and HellaSwag are two-column), a real
index, PDFium read back. A highlight must land on exactly the quoted characters."""

from __future__ import annotations

import io
import json
import re
import shutil
import unicodedata

import numpy as np
import pypdfium2 as pdfium
import pytest
from conftest import ARAGOG, ROBUSTNESS, make_settings
from hypothesis import given, strategies as st
from PIL import Image

from culture_rag import Assistant
from culture_rag.errors import IndexLoadError, IndexModelMismatch, QueryError, SourceFileError
from culture_rag.ingest.cleaning import clean_text
from culture_rag.ingest.papers import read_paper
from culture_rag.ingest.sourcemap import clean_traced
from culture_rag.serve.sourceview import MAX_SCALE

TOL = 0.5  # PDF points


def squeeze(text: str) -> str:
    """Text modulo whitespace (line breaks and the spaces joining lines)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


class Page:
    """PDFium's own view of one page: each character's text and box."""

    def __init__(self, doc, number: int) -> None:
        self.page = doc[number - 1]
        self.textpage = self.page.get_textpage()
        n = self.textpage.count_chars()
        self.text = [self.textpage.get_text_range(i, 1) for i in range(n)]
        self.boxes = [self.textpage.get_charbox(i) for i in range(n)]

    def inked(self, chars) -> list[int]:
        return [i for i in chars if self.text[i].strip() and self.boxes[i][2] > self.boxes[i][0]]

    def under(self, boxes) -> set[int]:
        """Characters whose box centre lies inside a highlight."""
        out = set()
        for i, (l, b, r, t) in enumerate(self.boxes):
            x, y = (l + r) / 2, (b + t) / 2
            if self.text[i].strip() and any(B[0] <= x <= B[2] and B[1] <= y <= B[3] for B in boxes):
                out.add(i)
        return out


def inside(char_box, box) -> bool:
    l, b, r, t = char_box
    return l >= box[0] - TOL and b >= box[1] - TOL and r <= box[2] + TOL and t <= box[3] + TOL


def check(view, page: Page) -> str:
    """The highlight of `view` on `page` is exactly the quoted characters: every inked quoted
    character lies in a box, every box is the bounding box of the quoted characters in it, and
    the characters under the boxes are the quoted ones. Returns the highlighted text."""
    chars = [i for first, count in view.char_ranges for i in range(first, first + count)]
    inked = page.inked(chars)
    rects = [b.pdf for b in view.boxes]
    members: dict[int, list[int]] = {k: [] for k in range(len(rects))}
    for i in inked:
        k = next((k for k, box in enumerate(rects) if inside(page.boxes[i], box)), None)
        assert k is not None, f"{page.text[i]!r} (char {i}) of {view.quote!r} is outside every box"
        members[k].append(i)
    for k, box in enumerate(rects):
        assert members[k], f"box {box} of {view.quote!r} holds no quoted character"
        cb = [page.boxes[i] for i in members[k]]
        tight = (min(c[0] for c in cb), min(c[1] for c in cb), max(c[2] for c in cb), max(c[3] for c in cb))
        assert max(abs(a - b) for a, b in zip(tight, box)) <= TOL, (box, tight, view.quote)
    assert page.under(rects) == set(inked), view.quote
    for b in view.boxes:  # pixels and fractions describe the same rectangle
        assert b.left == pytest.approx(b.rel_left * view.width) and b.bottom == pytest.approx(b.rel_bottom * view.height)
        assert 0 <= b.rel_left < b.rel_right <= 1 and 0 <= b.rel_top < b.rel_bottom <= 1
    return "".join(page.text[i] for i in chars)


def two_columns(view) -> bool:
    return any(b.rel_right < 0.5 for b in view.boxes) and any(b.rel_left > 0.5 for b in view.boxes)


def hyphen_break(view, page: Page) -> bool:
    """The quote has a word broken across lines with a hyphen: between two highlighted runs
    PDFium's characters hold only a hyphen (PDFium marks a line-end one U+FFFE) and line breaks,
    and the second run starts on a lower line."""
    for (a, n), (b, _) in zip(view.char_ranges, view.char_ranges[1:]):
        gap = "".join(page.text[a + n : b])
        lower = page.boxes[b][3] < page.boxes[a + n - 1][1]
        if re.fullmatch(r"[-\x02\u00ad\ufffe]\s*", gap) and lower and page.text[a + n - 1].isalpha() and page.text[b].isalpha():
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("paper_id, every", [("bert", 2), ("hellaswag", 3), ("distilbert", 2)])
def test_highlights_land_on_exactly_the_quoted_characters(real_aragog_assistant, paper_id, every):
    assistant = real_aragog_assistant
    info = next(p for p in assistant.papers() if p.paper_id == paper_id)
    doc = pdfium.PdfDocument(str(assistant.corpus_dir / info.source))
    pages: dict[int, Page] = {}
    seen = {"sentences": 0, "pages": set(), "lines": 0, "columns": 0, "hyphen": 0, "page_break": 0}
    for chunk in [c for c in assistant.snapshot.chunks if c.paper_id == paper_id][::every]:
        for s in chunk.sentences:
            view = assistant.source_view(chunk, start=s.start, end=s.end, image=False)
            assert view.exact, (view.quote, view.note)
            page = pages.setdefault(view.page, Page(doc, view.page))
            got = check(view, page)
            if squeeze(got) != squeeze(view.quote):  # the sentence runs on to the next page
                after = assistant.source_view(chunk, start=s.start, end=s.end, page=view.page + 1, image=False)
                got += check(after, pages.setdefault(after.page, Page(doc, after.page)))
                seen["page_break"] += 1
            assert squeeze(got) == squeeze(view.quote)
            seen["sentences"] += 1
            seen["pages"].add(view.page)
            seen["lines"] += len({round(b.top) for b in view.boxes}) > 1
            seen["columns"] += two_columns(view)
            seen["hyphen"] += hyphen_break(view, page)
    assert seen["sentences"] > 80 and len(seen["pages"]) >= info.n_pages - 1, seen
    assert seen["lines"] > 20, seen
    if paper_id in ("bert", "hellaswag"):  # two-column papers: sentences from one column into the next
        assert seen["columns"] >= 1 and seen["hyphen"] >= 1, seen


def test_a_citation_opens_on_its_page_and_any_page_at_any_scale(real_aragog_assistant):
    assistant = real_aragog_assistant
    hit = assistant.search("masked language model next sentence prediction pre-training tasks", k=1)[0]
    view = assistant.source_view(hit)
    first = hit.chunk.sentences[0]
    assert (view.start, view.end) == (first.start, first.end) and view.quote == hit.chunk.sentence_text(first)
    assert view.page == view.cited_page == first.page and view.exact and view.boxes
    image = Image.open(io.BytesIO(view.png))
    assert image.format == "PNG" and image.size == (view.width, view.height)
    # the boxes lie on ink: the image is darker under them than in its blank margin
    pixels = np.asarray(image.convert("L"), dtype=float)
    b = view.boxes[0]
    assert pixels[int(b.top) : int(b.bottom) + 1, int(b.left) : int(b.right) + 1].mean() < pixels[:, :5].mean() - 10

    assert (assistant.source_view(hit, image=False).width, assistant.source_view(hit, image=False).height) == image.size
    zoomed = assistant.source_view(hit, scale=3.0)
    assert zoomed.width == pytest.approx(2 * view.width, abs=1)
    for a, z in zip(view.boxes, zoomed.boxes):  # fractions of the page do not depend on the zoom
        assert (a.rel_left, a.rel_top, a.rel_right, a.rel_bottom) == pytest.approx((z.rel_left, z.rel_top, z.rel_right, z.rel_bottom), abs=1e-3)

    other = view.page % view.n_pages + 1
    turned = assistant.source_view(hit, page=other)
    assert turned.page == other and turned.cited_page == view.page and turned.png and turned.boxes == ()
    assert assistant.source_view(hit, scale=1000).scale <= MAX_SCALE
    with pytest.raises(QueryError, match="page 999"):
        assistant.source_view(hit, page=999)
    with pytest.raises(QueryError, match="not inside chunk"):
        assistant.source_view(hit, start=hit.chunk.end, end=hit.chunk.end + 5)


def test_a_text_paper_shows_its_section(real_corpus_assistant):
    assistant = real_corpus_assistant
    for paper in assistant.papers():
        chunks = [c for c in assistant.snapshot.chunks if c.paper_id == paper.paper_id and c.section and len(c.sentences) > 1]
        for chunk in (chunks[0], chunks[len(chunks) // 2]):
            s = chunk.sentences[1]
            view = assistant.source_view(chunk.chunk_id, start=s.start, end=s.end)
            assert view.kind in ("txt", "md") and view.png is None and view.exact
            assert view.section_text[view.quote_start : view.quote_end] == view.quote == chunk.sentence_text(s)
            assert chunk.section.casefold() in view.section_text[: view.quote_start].casefold()
        assert len(view.section_text) < sum(len(c.text) for c in chunks)  # a section, not the paper


@pytest.fixture
def one_pdf(tmp_path, fake_embedder):
    (tmp_path / "corpus").mkdir()
    shutil.copy(ARAGOG / "distilbert.pdf", tmp_path / "corpus")
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(tmp_path / "corpus")
    return assistant


def on_ink(view) -> bool:
    """The page image is darker under the boxes than on the page at large."""
    pixels = np.asarray(Image.open(io.BytesIO(view.png)).convert("L"), dtype=float)
    under = np.concatenate([pixels[int(b.top) : int(b.bottom) + 1, int(b.left) : int(b.right) + 1].ravel() for b in view.boxes])
    return under.mean() < pixels.mean() - 10


def test_highlights_on_a_rotated_page(tmp_path, fake_embedder):
    """A landscape table printed on a portrait page turned by /Rotate: the boxes are placed on the
    image as PDFium renders it."""
    name = "nics-background-checks-2015-11-rotated.pdf"
    (tmp_path / "corpus").mkdir()
    shutil.copy(ROBUSTNESS / "good" / name, tmp_path / "corpus")
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(tmp_path / "corpus")
    doc = pdfium.PdfDocument(str(tmp_path / "corpus" / name))
    assert doc[0].get_rotation() in (90, 270)
    page = Page(doc, 1)
    for chunk in assistant.snapshot.chunks[:4]:
        view = assistant.source_view(chunk)
        assert view.exact and view.width < view.height  # rendered upright as the page is shown
        assert squeeze(check(view, page)) == squeeze(view.quote) and on_ink(view)
    assistant.close()


def test_a_changed_or_missing_file_is_refused(one_pdf):
    chunk = one_pdf.snapshot.chunks[3]
    path = one_pdf.corpus_dir / "distilbert.pdf"
    path.write_bytes(path.read_bytes() + b"\n% appended\n")
    with pytest.raises(SourceFileError, match=r"distilbert\.pdf.*changed since it was indexed.*culture-rag build"):
        one_pdf.source_view(chunk)
    path.unlink()
    with pytest.raises(SourceFileError, match=r"distilbert\.pdf.*missing.*culture-rag build"):
        one_pdf.source_view(chunk.chunk_id)


def test_line_anchors_are_checked_before_they_are_read(one_pdf):
    paper = one_pdf.papers()[0]
    lines = one_pdf.index_dir / "segments" / paper.segment / "lines.npy"
    stored = np.load(lines)
    assert stored.shape == (len(read_paper(ARAGOG / "distilbert.pdf").line_anchors), 3) and stored.dtype == np.int32
    np.save(lines, stored[:-1])
    with pytest.raises(IndexLoadError, match=r"lines\.npy.*checksum mismatch"):
        one_pdf.source_view(one_pdf.snapshot.chunks[0])


def test_an_index_of_format_6_is_refused_with_a_rebuild_hint(one_pdf, fake_embedder):
    from culture_rag.index import MANIFEST_DIGEST, manifest_digest, read_current

    path = one_pdf.index_dir / read_current(one_pdf.index_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = 6
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexModelMismatch, match=r"manifest\.json.*format 6.*culture-rag build"):
        Assistant.load(one_pdf.index_dir, one_pdf.settings, fake_embedder)


def test_a_pdf_pdfium_cannot_open_is_shown_as_text(tmp_path, fake_embedder):
    data = (ROBUSTNESS / "good" / "002-trivial-libre-office-writer.pdf").read_bytes()
    end = data.rindex(b">>\nstartxref")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "damaged.pdf").write_bytes(data[:end] + b"\x0c" + data[end + 1 :])  # pypdf reads it, PDFium not
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(tmp_path / "corpus")
    chunk = assistant.snapshot.chunks[0]
    view = assistant.source_view(chunk)
    assert view.png is None and not view.exact and "pypdf" in view.note
    assert view.section_text[view.quote_start : view.quote_end] == view.quote


def test_a_pdf_read_by_pypdf_has_no_anchors(tmp_path):
    """No character positions are invented for text PDFium did not give."""
    data = (ROBUSTNESS / "good" / "002-trivial-libre-office-writer.pdf").read_bytes()
    end = data.rindex(b">>\nstartxref")
    path = tmp_path / "damaged.pdf"
    path.write_bytes(data[:end] + b"\x0c" + data[end + 1 :])
    assert read_paper(path).line_anchors == ()
    assert read_paper(ROBUSTNESS / "good" / "002-trivial-libre-office-writer.pdf").line_anchors


# PDFium page text: ligatures, odd spaces, control characters, hyphens at line ends, \r\n
_PIECES = list("ab Z-\n\t\r\x02\x0c\u00a0\ufb01\u2003\u00bd.") + ["\r\n", "-\n", "- \n", "e\u0301"]
_PAGE_TEXT = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


@given(_PAGE_TEXT)
def test_traced_cleaning_is_the_cleaning(text):
    traced = clean_traced(text, list(range(len(text))))
    assert traced.text == clean_text(text, join_lines=False)
    for ch, src in zip(traced.text, traced.chars):  # each character comes from one that yields it (with its marks)
        assert ch.isspace() or ch in unicodedata.normalize("NFKC", text[src : src + 2])
    assert traced.chars == sorted(traced.chars)


def test_cli_show_writes_the_page_and_prints_its_boxes(real_aragog_assistant, tmp_path):
    from typer.testing import CliRunner

    from culture_rag.serve.cli import app

    chunk = next(c for c in real_aragog_assistant.snapshot.chunks if c.paper_id == "bert" and (c.page_start or 0) > 2)
    s = chunk.sentences[-1]
    out = tmp_path / "page.png"
    args = ["show", chunk.chunk_id, "--index", str(real_aragog_assistant.index_dir), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--start", str(s.start), "--end", str(s.end), "--scale", "1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["quote"] == chunk.sentence_text(s) and shown["exact"] and shown["boxes"] and shown["scale"] == 1
    assert Image.open(out).size == (shown["width"], shown["height"])
    text = CliRunner().invoke(app, [*args, "--page", "1"])
    assert text.exit_code == 0 and "page 1 of 16" in text.output and "box" not in text.output


def test_pdfium_runs_in_a_contained_process(one_pdf, fake_embedder):
    """A view that overruns the time limit is stopped, and a renderer that died is replaced."""
    import multiprocessing
    import os
    import signal

    def started() -> list:
        return [p for p in multiprocessing.active_children() if p.pid not in before]

    before = {p.pid for p in multiprocessing.active_children()}  # other tests' assistants keep theirs
    chunk = one_pdf.snapshot.chunks[2]
    assert one_pdf.source_view(chunk).exact
    (child,) = started()
    os.kill(child.pid, signal.SIGKILL)
    child.join(5)
    assert one_pdf.source_view(chunk).exact  # a new renderer took over
    assert len(started()) == 1
    one_pdf.close()
    assert not started()
    hasty = Assistant.load(one_pdf.index_dir, one_pdf.settings.model_copy(update={"parse_timeout_s": 1e-4}), fake_embedder)
    with pytest.raises(SourceFileError, match=r"distilbert\.pdf.*longer than .*parse_timeout_s"):
        hasty.source_view(chunk)
    hasty.close()


def test_line_anchors_keep_numpy_out_of_the_parser_process():
    """The parser's child starts without numpy (test_robustness); tracing a PDF's lines must not
    import it, or every child's first paper pays for the import inside its parse budget."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from culture_rag.ingest.papers import read_paper; "
        f"assert read_paper(Path({str(ARAGOG / 'distilbert.pdf')!r})).line_anchors; print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
