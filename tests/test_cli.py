"""The command line end to end: real processes, the real packaged model, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ARAGOG, CORPUS, ROBUSTNESS

pytestmark = pytest.mark.slow

CLI = [str(Path(sys.executable).with_name("culture-rag"))]


def cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    shutil.copytree(CORPUS, tmp / "corpus")
    result = cli("build", str(tmp / "corpus"), "--index", str(tmp / "index"))
    assert result.returncode == 0, result.stderr
    assert "2 indexed" in result.stdout
    return tmp


def test_papers_lists_titles_authors_and_chunks(workspace):
    result = cli("papers", "--index", str(workspace / "index"), "--json")
    papers = json.loads(result.stdout)
    assert {p["authors"][0] for p in papers} == {"Huixia Shang", "Yuqi Mao"}
    assert all(p["n_chunks"] > 5 for p in papers)


def test_search_json_has_locations_and_ranks(workspace):
    result = cli("search", "export value of Chinese media", "-k", "3", "--json", "--index", str(workspace / "index"))
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    assert hits[0]["section"] and hits[0]["location"].startswith("§")
    assert any(h["dense_rank"] for h in hits) and any(h["keyword_rank"] for h in hits)


def test_ask_json_cites_exact_quote(workspace):
    result = cli("ask", "Which film industries does Belarus face fierce competition from?", "--json", "--index", str(workspace / "index"))
    answer = json.loads(result.stdout)
    assert answer["answered"] and "Russia" in answer["text"]
    citation = answer["citations"][0]
    assert "especially Russia and Europe" in citation["quote"] and citation["title"].startswith("Research on")


def test_rebuild_embeds_nothing_then_add_and_remove(workspace):
    index = str(workspace / "index")
    again = cli("build", str(workspace / "corpus"), "--index", index, "--json")
    assert json.loads(again.stdout)["embedded_chunks"] == 0
    added = cli("add", str(ARAGOG / "distilbert.pdf"), str(ROBUSTNESS / "corrupt" / "issue19484_1.pdf"), "--index", index)
    assert added.returncode == 1  # one file failed, and says so
    assert "issue19484_1.pdf" in added.stdout and "corrupt" in added.stdout
    assert "distilbert.pdf" in added.stdout and "indexed" in added.stdout
    listing = json.loads(cli("papers", "--index", index, "--json").stdout)
    assert "distilbert" in {p["paper_id"] for p in listing} and len(listing) == 3
    hit = json.loads(cli("search", "distillation during pre-training", "-k", "1", "--json", "--index", index).stdout)[0]
    assert hit["paper_id"] == "distilbert" and hit["page_start"] >= 1
    removed = cli("remove", "distilbert", "--index", index)
    assert removed.returncode == 0 and "2 papers" in removed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", ""], "empty"),
        (["remove", "no-such-paper"], "no paper with id"),
        (["add", "/nonexistent/paper.pdf"], "paper.pdf"),
        (["ask", "x" * 5000], "limit"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(workspace, args, message):
    result = cli(*args, "--index", str(workspace / "index"))
    assert result.returncode != 0
    assert message in (result.stderr + result.stdout)


def test_missing_index_is_named(tmp_path):
    result = cli("search", "anything", "--index", str(tmp_path / "none"))
    assert result.returncode == 2 and str(tmp_path / "none") in result.stderr
