"""The main journey through the web chat in a real browser (Playwright driving Debian's
chromium): ask, read the cited source, add papers, survive a corrupt one. Screenshots of each
state go to test-output/screenshots/."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import pytest
from conftest import ARAGOG, CHROMIUM, CORPUS, ROBUSTNESS, ROOT, free_port, launch_chromium, make_settings

SHOTS = ROOT / "test-output" / "screenshots"
WAIT_MS = 120_000  # upper bound for one step on a busy 2-core machine; steps end as soon as they can

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make browser)"),
]

HOSTILE_MD = """# Field notes on zebra migration

Zebra herds cross the river each spring ![pixel](http://tracker.example/p.png) near the northern ford.
The zebra survey portal is http://tracker.example/zebra and www.tracker.example for the herd maps.
Zebra herd counts rose by a third <img src="http://tracker.example/i.png"> during the dry season survey.
"""



@contextlib.contextmanager
def served_app(tmp_path, monkeypatch, embedder, pdfs: tuple[str, ...] = ()):
    """The app in this process over a fresh copy of corpus/ (and these aragog PDFs), with the real
    packaged model (the session's already-loaded embedder, to spare a second model load);
    yields its URL and assistant."""
    from culture_rag import Assistant
    from culture_rag.serve.webapp.server import build_app, serve

    shutil.copytree(CORPUS, tmp_path / "corpus")
    for name in pdfs:
        shutil.copy(ARAGOG / name, tmp_path / "corpus" / name)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    settings = make_settings(tmp_path)
    assistant = Assistant(settings, embedder=embedder)
    assistant.build(tmp_path / "corpus")
    demo = build_app(assistant)
    _, url = serve(demo, settings, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield url.rstrip("/") + "/", assistant
    finally:
        demo.close()
        assistant.close()


@contextlib.contextmanager
def browser_page(url: str, height: int = 900, **options):
    """A chromium page on `url`; `page.requested` collects every URL it fetched."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": height}, **options)
        page.set_default_timeout(WAIT_MS)
        page.requested = []
        page.on("request", lambda r: page.requested.append(r.url))
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()


def fetched_outside(page, url: str) -> list[str]:
    return [u for u in page.requested if not u.startswith((url, "data:", "blob:"))]


@pytest.fixture
def app_url(tmp_path, monkeypatch, real_corpus_assistant):
    with served_app(tmp_path, monkeypatch, real_corpus_assistant.embedder) as (url, _):
        yield url


@pytest.fixture
def page(app_url):
    with browser_page(app_url) as page:
        yield page


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def ask(page, question: str):
    """Type a question, wait for the checked answer (its source panel drawn); the last answer."""
    from playwright.sync_api import expect

    bots = page.locator("#chat [data-testid='bot']")
    before = bots.count()
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    expect(bots).to_have_count(before + 1)
    last = bots.last
    expect(last).not_to_contain_text("Searching the papers")
    expect(page.locator("#sources .timing")).to_be_visible()
    return last


def open_library(page):
    page.get_by_role("tab", name="Library").click()
    page.locator("#library table.library").wait_for()


def upload(page, paths: list[Path], stored_names: list[str]):
    """Upload through the file picker (the upload itself starts the incremental rebuild) and
    wait for the outcome of each file, listed under its stored name."""
    from playwright.sync_api import expect

    page.locator("#upload input[type=file]").set_input_files([str(p) for p in paths])
    outcome = page.locator("#outcome .outcomes li")
    for name in stored_names:
        expect(outcome.filter(has_text=name)).to_have_count(1)


def test_main_journey(page, app_url, tmp_path):
    from playwright.sync_api import expect

    # First load: example questions about the shipped papers.
    expect(page.get_by_text("What strengths does Belarus's cultural industry have?")).to_be_visible()
    shot(page, "01-first-load")

    # A question about the corpus gets an answer with a citation...
    answer = ask(page, "What strengths does Belarus's cultural industry have?")
    expect(answer.locator("a.cite").first).to_be_visible()
    shot(page, "02-answer")

    # ...whose source shows the paper's title and the quoted sentence.
    answer.locator("a.cite").first.click()
    card = page.locator("#sources details.source[open]")
    expect(card).to_have_count(1)
    expect(card.locator(".title")).to_have_text(re.compile("^Research on the Development Strategy of the Cultural"))
    quote = card.locator("mark").inner_text()
    assert quote.strip()
    assert " ".join(quote.split()) in " ".join(card.locator(".passage").inner_text().split())
    assert "Yuqi Mao" in card.locator(".authors").inner_text()
    shot(page, "03-source-open")

    # A follow-up is answered within the conversation. In a new conversation, a question the
    # papers do not cover is declined plainly.
    expect(ask(page, "and what about China?").locator("a.cite").first).to_be_visible()
    page.locator("#new-conversation").click()
    expect(page.locator("#chat [data-testid='bot']")).to_have_count(0)
    declined = ask(page, "Which team won the 2014 football World Cup?")
    expect(declined).to_contain_text("do not answer")
    expect(page.locator("#sources")).to_contain_text("Closest passages")
    assert page.locator("#sources details.closest").count() > 0
    shot(page, "04-declined")

    # A broad question gets several cited sentences, the likeliest first: here the conclusion
    # that names the strategies.
    strategies = ask(page, "What strategies do the papers propose for China's cultural industry to go international?")
    expect(strategies.locator("a.cite").first).to_be_visible()
    assert strategies.locator("a.cite").count() >= 3
    for strategy in ("top-level design", "regional advantages", "cultural industry brands"):
        expect(strategies).to_contain_text(strategy)
    shot(page, "03b-broad-answer")

    # Several papers at once: DistilBERT and a Markdown file full of links and images.
    hostile = tmp_path / "zebra notes (draft).md"
    hostile.write_text(HOSTILE_MD)
    open_library(page)
    upload(page, [ARAGOG / "distilbert.pdf", hostile], ["distilbert.pdf", "zebra-notes-draft.md"])
    outcome = page.locator("#outcome")
    expect(outcome.locator("li.status-indexed")).to_have_count(2)
    expect(page.locator("#library")).to_contain_text("DistilBERT")
    expect(page.locator("#library")).to_contain_text("zebra-notes-draft.md")  # stored under a safe name
    shot(page, "05-library-added")

    page.get_by_role("tab", name="Chat").click()
    answer = ask(page, "What percentage of BERT's language understanding capabilities does DistilBERT retain?")
    expect(answer.locator("a.cite").first).to_be_visible()
    expect(page.locator("#sources details.source .title").first).to_contain_text("DistilBERT")
    shot(page, "06-answer-from-upload")

    # Text from documents renders as text: no image, no link out of the app.
    answer = ask(page, "Where do zebra herds cross the river, and what is the zebra survey portal?")
    expect(answer.locator("a.cite").first).to_be_visible()
    assert page.locator("#chat img, #sources img").count() == 0
    assert page.locator("#chat a[href*='tracker'], #sources a[href*='tracker']").count() == 0
    expect(page.locator("#sources")).to_contain_text("tracker.example")

    # A corrupt PDF gets a clear per-file error; the library and earlier papers are untouched.
    open_library(page)
    upload(page, [ROBUSTNESS / "corrupt" / "issue19484_1.pdf"], ["issue19484_1.pdf"])
    error = outcome.locator("li.error", has_text="issue19484_1.pdf")
    expect(error).to_contain_text("corrupt")
    expect(page.locator("#library")).to_contain_text("4 papers")
    assert outcome.locator("li").count() == 1  # added files left the picker; only the new one was read
    shot(page, "07-corrupt-upload")

    # An encrypted PDF asks for its password and stays in the picker; with the password it opens.
    upload(page, [ROBUSTNESS / "encrypted" / "password-example.pdf"], ["password-example.pdf"])
    expect(outcome.locator("li.status-encrypted")).to_contain_text("password")
    page.locator("#password input").fill("test")
    page.locator("#add").click()
    expect(outcome.locator("li.status-indexed", has_text="password-example.pdf")).to_have_count(1)
    expect(page.locator("#library")).to_contain_text("5 papers")

    page.get_by_role("tab", name="Chat").click()
    answer = ask(page, "What is the cultural industry described as the material carrier of?")
    expect(answer.locator("a.cite").first).to_be_visible()
    answer = ask(page, "What percentage of BERT's language understanding capabilities does DistilBERT retain?")
    expect(answer.locator("a.cite").first).to_be_visible()
    shot(page, "08-still-answering")

    assert fetched_outside(page, app_url) == [], "the page fetched from outside the app"


# --- the reading room: open a citation's page, ask within chosen papers, export ------------------


@pytest.fixture
def reading_room_url(tmp_path, monkeypatch, real_corpus_assistant):
    """The app over the shipped papers and two real arXiv PDFs (BERT's pages are two-column)."""
    with served_app(tmp_path, monkeypatch, real_corpus_assistant.embedder, ("bert.pdf", "distilbert.pdf")) as served:
        yield served


def _alnum_chars(textpage) -> tuple[str, list[int]]:
    """The page's letters and digits, lower-cased, with the char index of each: a way to find a
    quote on the page that shares nothing with the index's own mapping."""
    text, where = [], []
    for i in range(textpage.count_chars()):
        ch = textpage.get_text_range(i, 1)
        if ch.isalnum():
            text.append(ch.lower())
            where.append(i)
    return "".join(text), where


def pdfium_quote_rects(pdf_path: Path, page_number: int, quote: str) -> list[tuple[float, float, float, float]]:
    """PDFium's own line rectangles (left, bottom, right, top in points) for the quote's characters."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf_path))
    try:
        textpage = doc[page_number - 1].get_textpage()
        letters, where = _alnum_chars(textpage)
        wanted = "".join(ch.lower() for ch in quote if ch.isalnum())
        at = letters.find(wanted)
        assert at >= 0 and letters.find(wanted, at + 1) < 0, "the quote must stand once on its page"
        first, last = where[at], where[at + len(wanted) - 1]
        n = textpage.count_rects(first, last - first + 1)
        return [textpage.get_rect(i) for i in range(n)]
    finally:
        doc.close()


def covered_share(boxes_a, boxes_b, step: float = 0.5) -> float:
    """Share of the area of boxes_a (left, bottom, right, top) that boxes_b also cover, on a grid."""
    inside = total = 0
    for left, bottom, right, top in boxes_a:
        x = left + step / 2
        while x < right:
            y = bottom + step / 2
            while y < top:
                total += 1
                inside += any(l <= x <= r and b <= y <= t for l, b, r, t in boxes_b)
                y += step
            x += step
    return inside / total if total else 0.0


def test_reading_room_journey(reading_room_url, tmp_path):
    """Ask → open the cited page → the highlight covers PDFium's boxes of the quoted characters →
    pick two papers → only they are cited → export holds the reference list."""
    import pypdfium2 as pdfium
    from playwright.sync_api import expect

    url, assistant = reading_room_url
    with browser_page(url, height=1000, accept_downloads=True) as page:
        _reading_room(page, assistant, pdfium, expect, tmp_path)
        assert fetched_outside(page, url) == [], "the page fetched from outside the app"


def _reading_room(page, assistant, pdfium, expect, tmp_path):
    titles = {p.paper_id: p.title for p in assistant.papers()}
    bert = next(p for p in assistant.papers() if p.source == "bert.pdf")

    # 1. A question about BERT; its first citation opens on its page, the quote highlighted.
    ask(page, "What are the two pre-training tasks used by BERT?")
    card = page.locator("#sources details.source").first
    expect(card.locator(".title")).to_have_text(bert.title)
    quote = " ".join(card.locator("mark").inner_text().split())
    cited_page = int(re.search(r"p\. (\d+)", card.locator(".loc").inner_text()).group(1))
    card.get_by_role("button", name=re.compile("^Open the source")).click()
    viewer = page.locator("#viewer section.viewer")
    expect(viewer.locator("img")).to_be_visible()
    expect(viewer.locator(".where")).to_have_text(f"Page {cited_page} of {bert.n_pages}")
    expect(viewer.locator(".hl").first).to_be_attached()
    expect(viewer).to_be_focused()  # keyboard users land in the viewer
    shot(page, "10-source-page")

    # The highlight, read off the page in the browser and turned into PDF points, covers PDFium's
    # own boxes of the quoted characters, and nothing much besides.
    img = viewer.locator("img").bounding_box()
    doc = pdfium.PdfDocument(str(assistant.corpus_dir / "bert.pdf"))
    width, height = doc[cited_page - 1].get_size()
    doc.close()
    drawn = []
    for i in range(viewer.locator(".hl").count()):
        b = viewer.locator(".hl").nth(i).bounding_box()
        left, right = (b["x"] - img["x"]) / img["width"] * width, (b["x"] + b["width"] - img["x"]) / img["width"] * width
        top = height - (b["y"] - img["y"]) / img["height"] * height
        bottom = height - (b["y"] + b["height"] - img["y"]) / img["height"] * height
        drawn.append((left, bottom, right, top))
    pdfium_rects = pdfium_quote_rects(assistant.corpus_dir / "bert.pdf", cited_page, quote)
    assert covered_share(pdfium_rects, drawn) > 0.97
    assert covered_share(drawn, pdfium_rects) > 0.97

    # Next and previous page, by button and by keyboard; zoom keeps the boxes on the words.
    viewer.get_by_role("button", name="Next page").click()
    expect(page.locator("#viewer .where")).to_have_text(f"Page {cited_page + 1} of {bert.n_pages}")
    expect(page.locator("#viewer .hl")).to_have_count(0)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#viewer .where")).to_have_text(f"Page {cited_page} of {bert.n_pages}")
    page.locator("#viewer").get_by_role("button", name="Zoom in").click()
    expect(page.locator("#viewer .zoom")).to_have_text("150%")
    zoomed = page.locator("#viewer img").bounding_box()
    assert zoomed["width"] > 1.4 * img["width"]
    shot(page, "11-source-zoomed")
    page.locator("#viewer").get_by_role("button", name="Close the source viewer").click()
    expect(page.locator("#viewer section.viewer")).to_have_count(0)

    # 2. Two papers picked in the chat: only they are cited, though BERT answers best unscoped.
    page.locator("#new-conversation").click()
    chosen = [p for p in assistant.papers() if p.source != "bert.pdf"][:2]
    assert any(p.source == "distilbert.pdf" for p in chosen) or len(chosen) == 2
    picker = page.locator("#paper-scope input")
    for paper in chosen:
        picker.click()
        picker.fill(paper.title[:25])
        page.get_by_role("option", name=re.compile(re.escape(paper.title[:25]))).first.click()
    page.keyboard.press("Escape")
    ask(page, "What are the two pre-training tasks used by BERT?")
    cited = {t.strip() for t in page.locator("#sources details.source .title").all_inner_texts()}
    assert cited and cited <= {titles[p.paper_id] for p in chosen}, cited
    ask(page, "What strengths does Belarus's cultural industry have?")
    shot(page, "12-scoped-answer")

    # A text paper's citation opens on its section, the quote marked in it.
    text_card = page.locator("#sources details.source").first
    text_quote = " ".join(text_card.locator("mark").inner_text().split())
    text_card.get_by_role("button", name=re.compile("^Open the source")).click()
    expect(page.locator("#viewer .section-text mark")).to_be_visible()
    assert " ".join(page.locator("#viewer .section-text mark").inner_text().split()) == text_quote
    page.keyboard.press("Escape")
    expect(page.locator("#viewer section.viewer")).to_have_count(0)

    # Feedback on the answer on show is stored beside the index, ready to become an eval question.
    page.locator("#feedback").get_by_text("Feedback on the answer on show").click()
    page.get_by_label("Citing the wrong passage").check()
    page.locator("#feedback-comment textarea").fill("the second point cites the abstract")
    page.locator("#feedback-send").click()
    expect(page.locator("#feedback-note")).to_contain_text("recorded as wrong citation")
    from culture_rag.serve.feedback import read_feedback

    entries = read_feedback(assistant.index_dir).entries
    assert [(e.kind, e.comment, e.question) for e in entries] == [
        ("wrong_citation", "the second point cites the abstract", "What strengths does Belarus's cultural industry have?")
    ]

    # 3. Export: the conversation as Markdown with a numbered reference list, and BibTeX.
    page.locator("#export-conversation").click()
    links = page.locator("#exported a")
    expect(links).to_have_count(2)
    files = {}
    for i in range(2):
        link = links.nth(i)
        with page.expect_download() as download:
            link.click()
        target = tmp_path / download.value.suggested_filename
        download.value.save_as(target)
        files[target.suffix] = target.read_text(encoding="utf-8")
    markdown, bib = files[".md"], files[".bib"]
    assert "## References" in markdown
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", markdown.split("## References")[0])}
    listed = {int(n) for n in re.findall(r"^(\d+)\. ", markdown.split("## References")[1], re.M)}
    assert markers and markers == listed
    assert any(titles[p.paper_id] in markdown for p in chosen)
    assert bib.count("@") >= 1 and "title" in bib
    shot(page, "13-exported")

    # 4. The Library's filters, and asking within what they leave.
    open_library(page)
    years = {p.paper_id: p.year for p in assistant.papers()}
    dated = [pid for pid, year in years.items() if year is not None]
    assert dated, "the arXiv PDFs state their year"
    span = f"{min(years[p] for p in dated)}-{max(years[p] for p in dated)}"
    page.locator("#filter-year textarea").fill(span)
    page.locator("#filter").click()
    expect(page.locator("#library .library-summary")).to_contain_text(f"{len(dated)} of {len(years)} papers")
    expect(page.locator("#library table.library tbody tr")).to_have_count(len(dated))
    page.locator("#filter-year textarea").fill("twenty")
    page.locator("#filter-year textarea").press("Enter")
    expect(page.locator("#library")).to_contain_text("give a year")
    page.locator("#filter-year textarea").fill(span)
    page.locator("#filter").click()
    expect(page.locator("#library table.library tbody tr")).to_have_count(len(dated))
    shot(page, "14-library-filtered")
    page.locator("#ask-within").click()
    expect(page.get_by_role("tab", name="Chat")).to_have_attribute("aria-selected", "true")
    for pid in dated:
        expect(page.locator("#paper-scope")).to_contain_text(titles[pid][:30])
    ask(page, "What is the model pre-trained on?")
    cited = {t.strip() for t in page.locator("#sources details.source .title").all_inner_texts()}
    assert cited and cited <= {titles[pid] for pid in dated}, cited
