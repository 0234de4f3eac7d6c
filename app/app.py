"""The deployable web chat: `python app/app.py`, `gradio app/app.py` (Gradio's reload mode) or a
Hugging Face Space (README.md here). The chat is the package's (culture_rag.serve.webapp, the
same as `culture-rag serve`); this file only opens the index and starts it.

Configuration is the environment's:
- the index, and every other setting, as culture_rag.Settings reads them: CULTURE_RAG_INDEX_DIR
  (default: index, in the folder the app starts in), CULTURE_RAG_ANSWER_MODE, ...;
- the address, as Gradio and Spaces name it: GRADIO_SERVER_NAME and GRADIO_SERVER_PORT
  (default 127.0.0.1:7860, as `culture-rag serve`);
- CULTURE_RAG_AUTH: a users.toml (`culture-rag users add`); any address but loopback needs one.
Without a usable index the page says how to build one instead of the chat."""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import culture_rag  # noqa: F401  installed (make setup, pip install), or copied beside this file
except ImportError:  # a checkout that is not installed: the package from the repository's src/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from culture_rag.errors import CultureRagError, IndexLoadError
from culture_rag.serve.users import UsersFile
from culture_rag.serve.webapp.page import build_app, index_missing_page
from culture_rag.serve.webapp.server import DEFAULT_HOST, DEFAULT_PORT, open_index, start
from culture_rag.settings import Settings

import gradio as gr  # noqa: E402  after the package, which turns Gradio's telemetry off first

settings = Settings()
# Gradio's reload mode runs this file again after every edit, with NO_RELOAD false: the index and
# the models load once, and a reload only rebuilds the page around them.
if gr.NO_RELOAD:
    try:
        assistant, problem = open_index(settings), None
    except IndexLoadError as exc:  # no index yet, or a damaged one: the page says what to run
        assistant, problem = None, exc
demo = build_app(assistant) if assistant is not None else index_missing_page(settings, problem)

# Not on a reload: the server is already up, and launching again would only warm up twice.
if __name__ == "__main__" and gr.NO_RELOAD:
    auth = os.environ.get("CULTURE_RAG_AUTH")
    try:
        start(
            demo,
            assistant,
            settings,
            host=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
            port=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
            users=UsersFile(auth) if auth else None,
        )
    except CultureRagError as exc:  # e.g. a public address without logins: one line, as the CLI says it
        sys.exit(f"error: {exc}")
