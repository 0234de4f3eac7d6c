"""`culture-rag mcp`: a real MCP client session (mcp.client.stdio) against the command in a
child process, over a real index of the shipped papers and the real packaged model."""

from __future__ import annotations

import os
import sys

import anyio
import pytest
from conftest import free_port

pytestmark = pytest.mark.slow

BELARUS = "What strengths does Belarus's cultural industry have?"


async def _session(index_dir, calls):
    from mcp import StdioServerParameters
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items() if k.startswith(("CULTURE_RAG_", "HF_", "TRANSFORMERS_"))}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "culture_rag.serve.cli", "mcp", "--index", str(index_dir)],
        env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    results = {}
    with anyio.fail_after(300):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            results["init"] = await session.initialize()
            results["tools"] = (await session.list_tools()).tools
            for name, tool, arguments in calls:
                results[name] = await session.call_tool(tool, arguments)
    return results


@pytest.fixture(scope="module")
def session(real_corpus_assistant):
    paper = real_corpus_assistant.papers()[0].paper_id
    cited = real_corpus_assistant.ask(BELARUS).citations[0]  # the same engine and index as the server's
    calls = [
        ("ask", "ask", {"question": BELARUS}),
        ("declined", "ask", {"question": "Which team won the 2014 football World Cup?", "k": 3}),
        ("search", "search", {"question": "cultural diplomacy between China and Belarus", "k": 4}),
        ("scoped", "search", {"question": "cultural industry", "papers": [paper], "k": 3}),
        ("papers", "papers", {}),
        ("bad_k", "search", {"question": "culture", "k": 0}),
        ("bad_paper", "ask", {"question": BELARUS, "papers": ["no-such-paper"]}),
        ("empty", "ask", {"question": "   "}),
        ("source", "source", {"chunk_id": cited.chunk.chunk_id, "start": cited.start, "end": cited.end}),
        ("bad_source", "source", {"chunk_id": "no-such-chunk"}),
    ]
    return {"paper": paper, "cited": cited, **anyio.run(_session, real_corpus_assistant.index_dir, calls)}


def chunk_texts(assistant) -> dict[str, str]:
    return {c.chunk_id: c.text for c in assistant.snapshot.chunks}


def test_the_tools_are_listed_with_their_arguments(session):
    assert session["init"].server_info.name == "culture-rag"
    tools = {t.name: t for t in session["tools"]}
    assert set(tools) == {"ask", "search", "papers", "source"}
    assert set(tools["source"].input_schema["properties"]) == {"chunk_id", "start", "end", "page", "image"}
    assert set(tools["ask"].input_schema["properties"]) == {"question", "papers", "k"}
    assert tools["ask"].input_schema["required"] == ["question"]
    assert "citations" in tools["ask"].output_schema["properties"]


def test_ask_answers_with_citations_that_are_real_passages(session, real_corpus_assistant):
    result = session["ask"]
    assert not result.is_error
    answer = result.structured_content
    assert answer["answered"] and answer["citations"]
    texts = chunk_texts(real_corpus_assistant)
    titles = {p.paper_id: p.title for p in real_corpus_assistant.papers()}
    for c in answer["citations"]:
        assert f"[{c['n']}]" in answer["text"]
        assert c["quote"].strip() and c["quote"] in texts[c["chunk_id"]]
        assert c["title"] == titles[c["paper_id"]]
    assert "Belarus" in answer["text"]


def test_a_question_the_papers_cannot_answer_is_declined(session):
    answer = session["declined"].structured_content
    assert answer["answered"] is False and answer["citations"] == []
    assert "do not answer" in answer["text"] and len(answer["closest"]) == 3


def test_search_returns_ranked_real_passages_and_honours_the_paper_filter(session, real_corpus_assistant):
    texts = chunk_texts(real_corpus_assistant)
    passages = session["search"].structured_content["passages"]
    assert len(passages) == 4
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert all(texts[p["chunk_id"]] == p["text"] for p in passages)
    scoped = session["scoped"].structured_content["passages"]
    assert scoped and {p["paper_id"] for p in scoped} == {session["paper"]}


def test_papers_lists_the_library(session, real_corpus_assistant):
    listed = session["papers"].structured_content["papers"]
    assert {p["paper_id"] for p in listed} == {p.paper_id for p in real_corpus_assistant.papers()}
    assert all(p["title"] and p["n_chunks"] > 0 for p in listed)


def test_source_shows_a_citation_in_its_section(session, real_corpus_assistant):
    """A text paper's citation opens on its section, the quote at the offsets given."""
    cited = session["cited"]
    view = session["source"].structured_content
    assert not session["source"].is_error
    assert view["paper_id"] == cited.paper.paper_id and view["quote"] == cited.quote
    section = view["section_text"]
    assert section[view["quote_start"] : view["quote_end"]] == cited.quote
    assert view["png_base64"] is None and view["highlights"] == []
    assert session["bad_source"].is_error and "no-such-chunk" in session["bad_source"].content[0].text


def test_bad_arguments_come_back_as_tool_errors_with_the_reason(session):
    assert session["bad_k"].is_error and "k must be" in session["bad_k"].content[0].text
    assert session["bad_paper"].is_error and "no-such-paper" in session["bad_paper"].content[0].text
    assert session["empty"].is_error and "question is empty" in session["empty"].content[0].text


def test_streamable_http_serves_the_same_tools_on_loopback_only(real_corpus_assistant, tmp_path):
    import socket
    import subprocess
    import time

    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    log = tmp_path / "mcp-http.log"
    cmd = [sys.executable, "-m", "culture_rag.serve.cli", "mcp", "--index", str(real_corpus_assistant.index_dir), "--http", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    async def session():
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            return await s.call_tool("search", {"question": "cultural diplomacy", "k": 2})

    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        result = anyio.run(session)
        texts = chunk_texts(real_corpus_assistant)
        passages = result.structured_content["passages"]
        assert len(passages) == 2 and all(texts[p["chunk_id"]] == p["text"] for p in passages)
        listening = [
            line.split()[1]
            for line in open("/proc/net/tcp").read().splitlines()[1:]
            if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
        ]
        assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
    finally:
        proc.terminate()
        proc.wait(15)
