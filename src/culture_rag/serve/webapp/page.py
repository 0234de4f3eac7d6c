"""The page: the answer settings, the Chat and Library tabs and the named API on one Blocks,
behind a queue that shares the cores among readers; and the page served instead when there is
no index to answer from, saying how to build one."""

from __future__ import annotations

import threading

import gradio as gr

from culture_rag.assistant import Assistant
from culture_rag.errors import CultureRagError
from culture_rag.serve.webapp.api import add_api
from culture_rag.serve.webapp.chat_tab import answer_settings, chat_tab
from culture_rag.serve.webapp.library_tab import library_tab
from culture_rag.serve.webapp.render import md_text
from culture_rag.settings import Settings

# Two cores: two questions at a time keeps both busy without thrashing; a third waits its turn.
QUERY_CONCURRENCY = 2
# Waiting events across the app. Above this a request is refused at once ("queue is full,
# try again") instead of waiting ever longer; 64 covers 40 busy users with room to spare.
QUEUE_MAX = 64
TITLE = "# culture-rag\nQuestions answered from the indexed research papers, every sentence with its source."


def build_app(assistant: Assistant) -> gr.Blocks:
    write_lock = threading.Lock()  # one rebuild at a time, from the Library tab or the API
    # Questions from the page and from the API wait in one line for the same two slots.
    query = {"concurrency_id": "query", "concurrency_limit": QUERY_CONCURRENCY}
    with gr.Blocks(title="culture-rag", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        controls = answer_settings(assistant.settings)
        gr.Markdown(TITLE, elem_id="title")
        with gr.Tabs() as tabs:
            scope = chat_tab(assistant, controls, query)
            library_tab(assistant, write_lock, demo, tabs, scope)
        add_api(assistant, write_lock, query)
    # Queue positions go out once a second, not to every waiting user each time a job starts:
    # with dozens waiting, the per-job broadcast costs more CPU than the answers.
    demo.queue(default_concurrency_limit=QUERY_CONCURRENCY, max_size=QUEUE_MAX, status_update_rate=1.0)
    return demo


def index_missing_page(settings: Settings, problem: CultureRagError) -> gr.Blocks:
    """The page when settings.index_dir holds no usable index: what is wrong and the commands
    that build one. Building is left to the keeper of the server, not started by a page view:
    it takes minutes and writes to disk."""
    index, corpus = settings.index_dir, settings.corpus_dir
    text = (
        "## No index to answer from\n"
        f"The chat answers from an index of the papers, and the one it was given cannot be opened: {md_text(str(problem))}\n\n"
        "Build the index, then start the app again. From the repository (corpus/ into index/):\n"
        "```\nmake index\n```\n"
        f"or from any folder of papers (PDF, TXT, Markdown), into the folder the app reads:\n"
        f"```\nculture-rag build {corpus} --index {index}\n```\n"
        "The app reads the index that CULTURE\\_RAG\\_INDEX\\_DIR names (default: index, in the folder the app starts in)."
    )
    with gr.Blocks(title="culture-rag: no index", analytics_enabled=False) as demo:
        gr.Markdown(TITLE, elem_id="title")
        gr.Markdown(text, elem_id="no-index")
    return demo
