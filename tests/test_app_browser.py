"""The main journey through the web chat in a real browser (Playwright driving Debian's
chromium): ask, read the cited source, add papers, survive a corrupt one. Screenshots of each
state go to test-output/screenshots/."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import ARAGOG, CORPUS, ROBUSTNESS, ROOT, make_settings

CHROMIUM = Path("/usr/bin/chromium")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path, monkeypatch, real_corpus_assistant):
    """The app in this process over a fresh copy of corpus/, with the real packaged model
    (the session's already-loaded embedder, to spare a second model load)."""
    from culture_rag import Assistant
    from culture_rag.webapp.server import build_app, serve

    shutil.copytree(CORPUS, tmp_path / "corpus")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    settings = make_settings(tmp_path)
    assistant = Assistant(settings, embedder=real_corpus_assistant.embedder)
    assistant.build(tmp_path / "corpus")
    demo = build_app(assistant)
    _, url = serve(demo, settings, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield url.rstrip("/") + "/"
    finally:
        demo.close()


@pytest.fixture
def page(app_url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)
        page.requested = []
        page.on("request", lambda r: page.requested.append(r.url))
        page.goto(app_url)
        try:
            yield page
        finally:
            browser.close()


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
    declined = ask(page, "What was China's GDP in 2023?")
    expect(declined).to_contain_text("do not answer")
    expect(page.locator("#sources")).to_contain_text("Closest passages")
    assert page.locator("#sources details.closest").count() > 0
    shot(page, "04-declined")

    # A broad question gets one cited point for each strategy the paper sets out under its own
    # headings, shown as a list.
    strategies = ask(page, "What strategies do the papers propose for China's cultural industry to go international?")
    expect(strategies.locator("li")).to_have_count(4)
    for heading in ("Top-Level Design", "Regional Advantages", "Innovative Development", "Cultural Industry Brands"):
        expect(strategies).to_contain_text(heading)
    assert strategies.locator("a.cite").count() == 4
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

    outside = [u for u in page.requested if not u.startswith((app_url, "data:", "blob:"))]
    assert outside == [], "the page fetched from outside the app"
