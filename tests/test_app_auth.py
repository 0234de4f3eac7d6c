"""A server shared by a group: `serve(..., users=...)` on loopback with the real index and
model. Without a login the page and the API are closed; gradio_client logs in with
Client(url, auth=...); a wrong password fails; the feedback endpoint records who sent it."""

from __future__ import annotations

import httpx
import pytest
from conftest import CHROMIUM, free_port, launch_chromium

from culture_rag.serve.feedback import read_feedback
from culture_rag.serve.users import UsersFile, add_user

pytestmark = pytest.mark.slow

PASSWORD = "a long enough password"



@pytest.fixture(scope="module")
def server(real_corpus_assistant, tmp_path_factory):
    from culture_rag.serve.webapp.server import build_app, serve

    users_toml = tmp_path_factory.mktemp("auth") / "users.toml"
    add_user(users_toml, "alice", PASSWORD)
    demo = build_app(real_corpus_assistant)
    _, url = serve(
        demo, real_corpus_assistant.settings, port=free_port(), block=False, users=UsersFile(users_toml)
    )
    try:
        yield url.rstrip("/") + "/"
    finally:
        demo.close()


def test_without_a_login_the_page_and_the_api_are_closed(server):
    page = httpx.get(server, timeout=30)
    config = page.text.replace(" ", "")
    assert page.status_code == 200 and '"auth_required":true' in config and '"components":[]' in config  # the login form only
    assert httpx.get(server + "config", timeout=30).status_code == 401
    assert httpx.get(server + "gradio_api/info", timeout=30).status_code == 401
    call = httpx.post(server + "gradio_api/call/search", json={"data": ["cultural diplomacy", 3]}, timeout=30)
    assert call.status_code == 401
    join = httpx.post(server + "gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"}, timeout=30)
    assert join.status_code == 401


def test_a_wrong_password_or_user_fails(server):
    from gradio_client import Client

    for name, password in (("alice", PASSWORD + "!"), ("mallory", PASSWORD), ("alice", "")):
        with pytest.raises(ValueError, match="(?i)could not login"):
            Client(server, auth=(name, password), verbose=False)
        login = httpx.post(server + "login", data={"username": name, "password": password}, timeout=30)
        assert login.status_code in (400, 422) and "access-token" not in login.headers.get("set-cookie", "")


def test_a_logged_in_client_asks_searches_and_sends_feedback(server, real_corpus_assistant):
    from gradio_client import Client

    client = Client(server, auth=("alice", PASSWORD), verbose=False)
    hits = client.predict(question="cultural diplomacy between China and Belarus", k=3, api_name="/search")["hits"]
    assert len(hits) == 3 and all(h["text"] for h in hits)
    answer = client.predict(question="What strengths does Belarus's cultural industry have?", api_name="/ask")
    assert answer["answered"] and answer["citations"]

    before = len(read_feedback(real_corpus_assistant.index_dir).entries)
    receipt = client.predict(answer=answer, kind="wrong_citation", comment="the second quote is off", api_name="/feedback")
    assert receipt["recorded"] and receipt["user"] == "alice"
    entries = read_feedback(real_corpus_assistant.index_dir).entries
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.user, entry.kind, entry.comment) == ("alice", "wrong_citation", "the second quote is off")
    assert entry.question == answer["question"] and entry.answer == answer["text"]
    assert entry.generation == answer["generation"] == real_corpus_assistant.snapshot.generation
    papers = {p.paper_id: p.source for p in real_corpus_assistant.papers()}
    assert [(c.paper_id, c.chunk_id, c.quote, c.source) for c in entry.citations] == [
        (c["paper_id"], c["chunk_id"], c["quote"], papers[c["paper_id"]]) for c in answer["citations"]
    ]

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="kind"):
        client.predict(answer=answer, kind="love it", api_name="/feedback")


def test_logout_is_open_and_ends_the_session(server):
    with httpx.Client(base_url=server, timeout=30) as browser:
        login = browser.post("login", data={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200 and login.json() == {"success": True}
        assert browser.get("config").status_code == 200
        assert browser.get("logout", follow_redirects=False).status_code == 302
        assert browser.get("config").status_code == 401


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make browser)")
def test_a_browser_logs_in_through_the_route_guard_and_asks(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(server)
            page.get_by_label("username").fill("alice")
            page.get_by_label("password").fill("not the password")
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
            expect(page.locator("#question")).to_have_count(0)
            page.get_by_label("username").fill("alice")  # the form starts empty again
            page.get_by_label("password").fill(PASSWORD)
            page.get_by_role("button", name="Login").click()
            box = page.locator("#question textarea")
            box.fill("What strengths does Belarus's cultural industry have?")
            box.press("Enter")
            expect(page.locator("#sources .timing")).to_be_visible()
            expect(page.locator("#chat [data-testid='bot']").last).to_contain_text("[1]")
        finally:
            browser.close()
