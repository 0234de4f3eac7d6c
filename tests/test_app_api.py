"""The web app's API, called with gradio_client against `culture-rag serve` in a child process
(the real packaged model, an index built at start-up from a copy of corpus/), plus fast checks
of what the page renders and which routes the server answers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import CORPUS, free_port

# --- fast: rendering and routes, no server -------------------------------------------------------


def test_untrusted_text_cannot_become_markup():
    from culture_rag.serve.webapp.render import md_text

    hostile = (
        '![x](http://evil.example/p.png) [click](http://evil.example) <img src="http://evil.example/i.png"> '
        "http://evil.example/bare www.evil.example mail@evil.example $$x$$ # heading\n===\n<script>alert(1)</script>"
    )
    out = md_text(hostile)
    for syntax in ("![", "](", "<img", "<script", "://", "www.", "@", "$$", "\n==="):
        assert syntax not in out, syntax
    assert "&lt;img" in out and "http&#58;//evil" in out  # still shown, as text


def test_sources_panel_escapes_passages_and_marks_the_quote():
    from culture_rag.serve.webapp.render import sources_html

    passage = 'Intro <b>bold</b> & more. The quoted sentence <img src="http://x/y.png">. Tail.'
    start = passage.index("The quoted")
    end = passage.index(" Tail")
    answer = {
        "answered": True,
        "citations": [
            {
                "n": 1,
                "title": "A <i>title</i>",
                "authors": ["Ann <Author>"],
                "location": "p. 3",
                "quote": passage[start:end],
                "start": 1000 + start,
                "end": 1000 + end,
                "passage": passage,
                "passage_start": 1000,
            }
        ],
        "passages": [],
        "removed": ["An unsupported <em>claim</em> (no support)"],
        "mode": "local",
        "timings": {"search_ms": 1.0, "answer_ms": 2.0, "total_ms": 3.0},
    }
    html = sources_html(answer, 4, show_removed=True)
    assert 'id="src-4-1"' in html
    assert "<mark>The quoted sentence &lt;img src=&quot;http://x/y.png&quot;&gt;.</mark>" in html
    assert "<b>" not in html and "<i>" not in html and "<em>" not in html and "<img" not in html
    assert "A &lt;i&gt;title&lt;/i&gt;" in html and "Ann &lt;Author&gt;" in html
    assert "Removed by the citation check" in html
    assert "Removed by the citation check" not in sources_html(answer, 4, show_removed=False)


def test_markers_link_to_their_source_cards_only():
    from culture_rag.serve.webapp.render import answer_markdown

    answer = {"answered": True, "text": "Growth was 7% [1]. See [the site](http://x.example) [2].", "notice": ""}
    md = answer_markdown(answer, 6)
    assert md.count('class="cite"') == 2 and 'href="#src-6-1"' in md and 'href="#src-6-2"' in md
    assert "](" not in md and "http://" not in md
    declined = answer_markdown({"answered": False, "text": "The indexed papers do not answer this question."}, 2)
    assert "do not answer" in declined and "cite" not in declined


def test_only_the_apps_routes_are_open():
    from culture_rag.serve.webapp.guard import route_allowed

    for path in ("/", "/config", "/assets/index-1.js", "/gradio_api/queue/join", "/gradio_api/upload",
                 "/gradio_api/heartbeat/abc", "/gradio_api/file=/tmp/gradio/abc/paper.pdf"):
        assert route_allowed(path), path
    for path in ("/monitoring", "/monitoring/key", "/gradio_api/runs", "/gradio_api/run-history/records",
                 "/gradio_api/proxy=https://x.hf.space", "/gradio_api/file=http://169.254.169.254/",
                 "/gradio_api/file=https://evil.example/x", "/gradio_api/mcp/sse", "/manifest.json",
                 "/gradio_api/vibe-edit", "/gradio_api/openapi.json", "/docs", "/gradio_api/profiling/traces"):
        assert not route_allowed(path), path


# --- slow: the launched app ----------------------------------------------------------------------

BELARUS = "What strengths does Belarus's cultural industry have?"



def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the server did not start within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`culture-rag serve` with no index yet: the app builds one from the corpus, then serves."""
    tmp = tmp_path_factory.mktemp("app-api")
    shutil.copytree(CORPUS, tmp / "corpus")
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CULTURE_RAG_CORPUS_DIR": str(tmp / "corpus"),
        "CULTURE_RAG_CACHE_DIR": str(tmp / "cache"),
        "GRADIO_TEMP_DIR": str(tmp / "uploads"),
    }
    log = tmp / "server.log"
    serve = ["serve", "--index", str(tmp / "index"), "--port", str(port)]
    cmd = [sys.executable, "-c", "from culture_rag.serve.cli import main; main()", *serve]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, proc, log)
        yield {"url": url, "port": port, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served["url"], verbose=False)


def corpus_titles() -> set[str]:
    meta = tomllib.loads((CORPUS / "papers.toml").read_text())
    return {entry["title"] for entry in meta.values()}


@pytest.mark.slow
def test_ask_returns_an_answer_with_exact_quotes(client):
    result = client.predict(question=BELARUS, api_name="/ask")
    assert result["answered"] and result["mode"] == "extractive"
    assert result["citations"], result
    for c in result["citations"]:
        assert f"[{c['n']}]" in result["text"]
        assert c["title"] in corpus_titles()
        a, b = c["start"] - c["passage_start"], c["end"] - c["passage_start"]
        assert c["passage"][a:b] == c["quote"] and c["quote"].strip()
        assert c["location"]
    assert {p["chunk_id"] for p in result["passages"]} >= {c["chunk_id"] for c in result["citations"]}


@pytest.mark.slow
def test_ask_uses_the_conversation_for_follow_ups(client):
    alone = client.predict(question="and what about China?", api_name="/ask")
    follow_up = client.predict(question="and what about China?", history=[BELARUS], api_name="/ask")
    assert [p["chunk_id"] for p in follow_up["passages"]] != [p["chunk_id"] for p in alone["passages"]]
    belarus = [p for p in follow_up["passages"] if "Belarus" in p["text"]]
    assert belarus, "the earlier question about Belarus should steer the follow-up's retrieval"


@pytest.mark.slow
def test_declined_questions_say_so_and_keep_the_closest_passages(client):
    result = client.predict(question="Which team won the 2014 football World Cup?", k=3, api_name="/ask")
    assert result["answered"] is False
    assert "do not answer" in result["text"]
    assert result["citations"] == [] and len(result["passages"]) == 3


@pytest.mark.slow
def test_search_returns_ranked_passages(client):
    result = client.predict(question="cultural diplomacy between China and Belarus", k=3, api_name="/search")
    hits = result["hits"]
    assert len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for h in hits:
        assert h["title"] in corpus_titles() and h["text"] and h["location"]
    papers = client.predict(api_name="/papers")["papers"]
    assert {p["title"] for p in papers} == corpus_titles()


@pytest.mark.slow
def test_bad_requests_get_clear_errors(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        client.predict(question="   ", api_name="/ask")
    with pytest.raises(AppError, match="k must be"):
        client.predict(question=BELARUS, k=0, api_name="/search")
    with pytest.raises(AppError, match="unknown mode"):
        client.predict(question=BELARUS, mode="shell", api_name="/ask")


@pytest.mark.slow
def test_add_reads_only_uploaded_files(client, served):
    """A request naming a server path instead of an upload is refused; the same file uploaded
    is added under its safe name and can be removed again."""
    import httpx
    from gradio_client import handle_file

    outside = served["tmp"] / "private notes.md"
    outside.write_text("# Private notes\n\nThe vault code is kept in a private note on the server.\n")
    api = served["url"] + "gradio_api/call/add"
    claim = {"data": [[{"path": str(outside), "meta": {"_type": "gradio.FileData"}}], ""]}
    event = httpx.post(api, json=claim, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{api}/{event}", timeout=60) as response:
        reply = "".join(response.iter_text())
    assert "event: error" in reply
    assert "private-notes.md" not in {p["source"] for p in client.predict(api_name="/papers")["papers"]}

    outcomes = client.predict(files=[handle_file(str(outside))], password="", api_name="/add")[3]["outcomes"]
    assert [(o["source"], o["status"]) for o in outcomes] == [("private-notes.md", "indexed")]
    paper = next(p for p in client.predict(api_name="/papers")["papers"] if p["source"] == "private-notes.md")
    removed = client.predict(paper_id=paper["paper_id"], api_name="/remove")
    assert removed["total_papers"] == len(corpus_titles())


@pytest.mark.slow
def test_server_binds_loopback_and_closes_unneeded_routes(served):
    with urllib.request.urlopen(served["url"], timeout=5) as response:
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("monitoring", "gradio_api/openapi.json", "gradio_api/file=http://127.0.0.1:1/x", "manifest.json"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(served["url"] + path, timeout=5)
        assert err.value.code == 404, path
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == served["port"]
    ]
    assert listening == [f"0100007F:{served['port']:04X}"]  # 127.0.0.1 only


@pytest.mark.slow
def test_reading_room_endpoints_scope_open_and_export(client):
    """/papers filters, /ask and /search within chosen papers, /source opens a citation's
    section at its quote, /export turns the answers into Markdown with a reference list and BibTeX."""
    papers = client.predict(api_name="/papers")["papers"]
    mao = client.predict(author="mao", year="", title="", api_name="/papers")["papers"]
    assert len(mao) == 1 and len(papers) == 2 and "Mao" in " ".join(mao[0]["authors"])
    other = next(p for p in papers if p["paper_id"] != mao[0]["paper_id"])
    question = "What strategies do the papers propose for China's cultural industry to go international?"
    scoped = client.predict(question=question, papers=[other["paper_id"]], api_name="/ask")
    assert scoped["answered"] and {c["paper_id"] for c in scoped["citations"]} == {other["paper_id"]}
    hits = client.predict(question="cultural industry", k=4, papers=[mao[0]["paper_id"]], api_name="/search")["hits"]
    assert len(hits) == 4 and {h["paper_id"] for h in hits} == {mao[0]["paper_id"]}

    cited = scoped["citations"][0]
    view = client.predict(chunk_id=cited["chunk_id"], start=cited["start"], end=cited["end"], api_name="/source")
    assert view["paper_id"] == other["paper_id"] and view["quote"] == cited["quote"]
    assert view["section_text"][view["quote_start"] : view["quote_end"]] == cited["quote"]

    exported = client.predict(answers=[scoped], api_name="/export")
    body, references = exported["markdown"].split("## References")
    assert {int(n) for n in re.findall(r"\[(\d+)\]", body)} == set(range(1, len(scoped["citations"]) + 1))
    assert other["title"] in references and "@" in exported["bibtex"] and other["title"] in exported["bibtex"]

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="year"):
        client.predict(author="", year="twenty", title="", api_name="/papers")
    with pytest.raises(AppError, match="no-such-paper"):
        client.predict(question=question, papers=["no-such-paper"], api_name="/ask")
