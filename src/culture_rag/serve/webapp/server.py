"""Serving the chat: open the index, warm the models, and launch a Blocks with the server's safe
defaults (loopback unless logins, the allow-list of routes, no telemetry, sharing or extra
Gradio services). `culture-rag serve` calls `launch`; app/app.py builds its page from the same
pieces (`open_index`, page.build_app) and hands it to `start`."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from culture_rag.assistant import Assistant
from culture_rag.library import Library
from culture_rag.serve.users import UsersFile
from culture_rag.serve.webapp.assets import CSS, JS
from culture_rag.serve.webapp.guard import RouteGuard, check_exposure, login_check
from culture_rag.serve.webapp.page import build_app
from culture_rag.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # this machine only; any other address needs logins (guard.check_exposure)
DEFAULT_PORT = 7860
MAX_UPLOAD = "50mb"  # per file; research papers are rarely above 20 MB


def serve(
    demo: gr.Blocks,
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    block: bool = True,
    users: UsersFile | None = None,
):
    """Start the server with safe defaults; returns (app, url). With block=False it runs in a
    thread until `demo.close()`. With `users`, every page and API call needs a login."""
    check_exposure(host, users)
    app, url, _ = demo.launch(
        auth=login_check(users) if users is not None else None,
        auth_message="Log in with the account that the keeper of this server made for you (culture-rag users add).",
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        inbrowser=False,
        quiet=not block,
        max_threads=16,
        max_file_size=MAX_UPLOAD,
        enable_monitoring=False,
        run_history=False,
        mcp_server=False,
        pwa=False,
        ssr_mode=False,
        footer_links=["api"],
        state_session_capacity=500,
        blocked_paths=[str(Path(settings.corpus_dir).resolve()), str(Path(settings.index_dir).resolve())],
        app_kwargs={"middleware": [Middleware(RouteGuard, login=users is not None)]},
        theme=gr.themes.Soft(font=("ui-sans-serif", "system-ui", "sans-serif"), font_mono=("ui-monospace",)),
        css=CSS,
        js=JS,
    )
    return app, url


def open_assistant(settings: Settings) -> Assistant:
    """The index of settings.index_dir, built from settings.corpus_dir first if there is none."""
    library = Library.open(settings, create=True)
    if library.snapshot is None:
        log.warning("no index in %s; building it from %s", settings.index_dir, settings.corpus_dir)
        report = library.build(settings.corpus_dir)
        log.warning("built: %d papers, %d chunks, %d failed", report.total_papers, report.total_chunks, len(report.failed))
    return Assistant(library=library)


def open_index(settings: Settings) -> Assistant:
    """The index of settings.index_dir as it is, never built here: IndexLoadError (saying what
    to run) when there is none or it is damaged."""
    return Assistant(library=Library.open(settings))


def limit_threads() -> None:
    """Queries run side by side on few cores: one BLAS thread each unless told otherwise
    (OMP/OPENBLAS_NUM_THREADS), so concurrent queries do not thrash. torch needs nothing here:
    questions and passages run in ONNX Runtime by default, and the embedder sets torch's
    threads per call when it is used (importing torch only to set them cost 5 s of start-up)."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")


def start(
    demo: gr.Blocks,
    assistant: Assistant | None,
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    users: UsersFile | None = None,
) -> None:
    """Warm the assistant that `demo` answers from (None: a page without one, such as
    page.index_missing_page) and serve until interrupted; with `users` (a users.toml's
    accounts) only they get in."""
    check_exposure(host, users)  # before the slow part
    if assistant is not None:
        limit_threads()
        assistant.warm_up()
        # Adding papers from the Library tab is quick once the passage model and the PDF parser
        # are up; they start behind the chat, which answers meanwhile.
        threading.Thread(target=assistant.warm_up, kwargs={"writes": True}, daemon=True).start()
        holds = f"{len(assistant.papers())} papers in {assistant.index_dir}"
    else:
        holds = f"no index in {settings.index_dir} (the page says how to build one)"
    logins = f"; logins from {users.path} ({len(users.current().hashes)} users)" if users else ""
    print(f"culture-rag: {holds}; serving on http://{host}:{port}{logins}")
    serve(demo, settings, host=host, port=port, block=True, users=users)


def launch(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, auth: Path | None = None) -> None:
    """`culture-rag serve`: load (or build) the index, warm the model, and serve until
    interrupted; with `auth` (a users.toml) only its users get in."""
    users = UsersFile(auth) if auth is not None else None  # read once, for the check and the server
    check_exposure(host, users)  # before building an index
    assistant = open_assistant(settings)
    start(build_app(assistant), assistant, settings, host=host, port=port, users=users)
