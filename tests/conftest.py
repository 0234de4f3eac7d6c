from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from hypothesis import settings as hypothesis_settings
from milvus_server import milvus_uri  # noqa: F401  (a session fixture: the Milvus Lite server)

# CI gates landings, so it replays the same examples every run; locally each run explores anew.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = ROOT / "corpus"
ARAGOG = SHARED / "pdfs" / "aragog"
ROBUSTNESS = SHARED / "pdfs" / "robustness"
EVAL = SHARED / "eval"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's (make browser): Playwright cannot download browsers here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_chromium(playwright):
    """Debian's chromium, headless and calling nowhere (no component updates, no background fetches)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def load_questions(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVAL / name).read_text().splitlines() if line.strip()]


@pytest.fixture
def fake_embedder():
    from fakes import HashEmbedder

    return HashEmbedder()


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


def make_settings(tmp: Path, **kw):
    from culture_rag import Settings

    return Settings(index_dir=tmp / "index", corpus_dir=tmp / "corpus", **kw)


@pytest.fixture(scope="session")
def real_corpus_assistant(tmp_path_factory):
    """The real packaged model, a real FAISS index, the shipped papers."""
    from culture_rag import Assistant

    tmp = tmp_path_factory.mktemp("real")
    shutil.copytree(CORPUS, tmp / "corpus")
    assistant = Assistant(make_settings(tmp))
    assistant.build(tmp / "corpus")
    return assistant


@pytest.fixture(scope="session")
def real_aragog_assistant(tmp_path_factory, real_corpus_assistant):
    from culture_rag import Assistant

    tmp = tmp_path_factory.mktemp("aragog")
    (tmp / "corpus").mkdir()
    for pdf in ARAGOG.glob("*.pdf"):
        shutil.copy(pdf, tmp / "corpus" / pdf.name)
    # Reuse the loaded model: building a second SentenceTransformer would double the start-up.
    assistant = Assistant(make_settings(tmp), embedder=real_corpus_assistant.embedder)
    assistant.build(tmp / "corpus")
    return assistant
