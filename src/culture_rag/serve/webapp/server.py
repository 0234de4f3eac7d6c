"""The Gradio web chat: a Chat tab (streamed, cited answers beside their sources), a Library
tab (list, add, remove papers) and named API endpoints. All question answering is the
Assistant's; this module only wires it to the page and keeps the server's defaults safe."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tempfile
import threading
from pathlib import Path

# Gradio reads this at import time, so it is set before the imports below; the app never calls home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import anyio
import gradio as gr
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from culture_rag.serve import export
from culture_rag.assistant import Assistant
from culture_rag.library import Library
from culture_rag.errors import CultureRagError, ExposureError
from culture_rag.serve.feedback import citations_from_answer, record_feedback
from culture_rag.ingest.papers import SUPPORTED_SUFFIXES
from culture_rag.settings import Settings
from culture_rag.serve.users import UsersFile

from culture_rag.serve.webapp import render
from culture_rag.serve.webapp.assets import CSS, JS, SOURCES_JS, VIEWER_JS

log = logging.getLogger(__name__)

MAX_UPLOAD = "50mb"  # per file; research papers are rarely above 20 MB
MAX_FILES_PER_ADD = 20
MAX_K = 20
# Two cores: two questions at a time keeps both busy without thrashing; a third waits its turn.
QUERY_CONCURRENCY = 2
# Waiting events across the app. Above this a request is refused at once ("queue is full,
# try again") instead of waiting ever longer; 64 covers 40 busy users with room to spare.
QUEUE_MAX = 64
MAX_REMEMBERED_ANSWERS = 20
VIEW_SCALE = 1.5  # pixels per PDF point at 100%: 108 dpi, a letter page 918 px wide
MAX_VIEW_SCALE = 4.0  # per browser session, for re-showing an earlier answer's sources
MODES = [
    ("Extractive: exact sentences from the papers, no model", "extractive"),
    ("Local model (Qwen2.5-Coder 1.5B), checked against the passages", "local"),
    ("Endpoint (OpenAI-compatible), checked against the passages", "endpoint"),
]
FEEDBACK_KINDS = [
    ("Helpful", "helpful"),
    ("Citing the wrong passage", "wrong_citation"),
    ("Should have said the papers do not say", "should_have_declined"),
]
EXAMPLES = [
    "What strengths does Belarus's cultural industry have?",
    "What was the export value of Chinese media in 2020 and where did it go?",
    "What strategies do the papers propose for China's cultural industry to go international?",
    "What does Mao's paper conclude about China and Belarus?",
]


# --- the page ----------------------------------------------------------------------------------


def build_app(assistant: Assistant) -> gr.Blocks:
    settings = assistant.settings
    write_lock = threading.Lock()  # one rebuild at a time, whatever path the request took
    # Exports live as long as the app (Gradio serves them from its own copies), then go.
    exports = tempfile.TemporaryDirectory(prefix="culture-rag-export-")

    # -- chat --

    def respond(question, chat, mode, k, show_removed, scope, state):
        question = (question or "").strip()
        if not question:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        chat = list(chat or [])
        state = dict(state or {})
        history = list(state.get("questions", []))
        chat.append({"role": "user", "content": render.md_text(question)})
        chat.append({"role": "assistant", "content": "Searching the papers…"})
        turn = len(chat) - 1
        yield chat, gr.skip(), state, ""
        partial = ""
        try:
            events = assistant.stream(question, mode=mode, k=int(k), history=history[-3:], papers=scope or None)
            for event in events:
                if event.answer is None:
                    partial += event.text
                    chat[-1] = {"role": "assistant", "content": render.streaming_markdown(partial)}
                    yield chat, gr.skip(), gr.skip(), gr.skip()
                    continue
                answer = render.answer_json(event.answer)
                chat[-1] = {"role": "assistant", "content": render.answer_markdown(answer, turn)}
                answers = dict(state.get("answers", {}))
                answers[str(turn)] = answer
                for old in sorted(answers, key=int)[:-MAX_REMEMBERED_ANSWERS]:
                    del answers[old]
                # As read: a follow-up after a follow-up builds on "What does Mao conclude about Belarus?"
                asked_as = event.answer.searched_as or question
                state = {"questions": history + [asked_as], "answers": answers, "current": turn}
                yield chat, render.sources_html(answer, turn, show_removed), state, gr.skip()
        except CultureRagError as exc:
            chat[-1] = {"role": "assistant", "content": render.error_markdown(str(exc))}
            yield chat, gr.skip(), state, gr.skip()

    def select_message(state, show_removed, evt: gr.SelectData):
        answers = (state or {}).get("answers", {})
        turn = evt.index if isinstance(evt.index, int) else None
        if turn is None:
            return gr.skip(), gr.skip()
        if str(turn) not in answers and str(turn + 1) in answers:
            turn += 1  # a question was clicked: show its answer's sources
        if str(turn) not in answers:
            return gr.skip(), gr.skip()
        state = {**state, "current": turn}
        return render.sources_html(answers[str(turn)], turn, show_removed), state

    def redraw_sources(state, show_removed):
        state = state or {}
        turn = state.get("current")
        answer = state.get("answers", {}).get(str(turn)) if turn is not None else None
        return render.sources_html(answer, turn, show_removed)

    def new_conversation():
        return [], render.sources_html(None, None, False), {}, ""

    def export_files(state, which):
        """The conversation (or the answer on show) as Markdown, and its cited papers as BibTeX,
        written to a fresh folder for the browser to download."""
        answers = (state or {}).get("answers", {})
        turns = sorted(answers, key=int)
        if which == "answer" and (state or {}).get("current") is not None:
            turns = [t for t in turns if int(t) == int(state["current"])]
        if not turns:
            return gr.update(value=None, visible=False), render.message_html("Ask a question first.")
        chosen = [answers[t] for t in turns]
        folder = Path(tempfile.mkdtemp(dir=exports.name))
        name = "answer" if which == "answer" else "conversation"
        (folder / f"{name}.md").write_text(export.conversation_markdown(chosen), encoding="utf-8")
        (folder / "references.bib").write_text(export.bibtex(export.cited_papers(chosen)), encoding="utf-8")
        files = [str(folder / f"{name}.md"), str(folder / "references.bib")]
        return gr.update(value=files, visible=True), ""

    def use_example(evt: gr.SelectData):
        value = evt.value if isinstance(evt.value, dict) else {}
        return value.get("text", "")

    # -- the source viewer --

    def open_source(evt: gr.EventData):
        """A citation card's Open button: its page (PDF) or section (text) with the quote marked."""
        data = getattr(evt, "_data", None) or {}
        try:
            where = {"chunk_id": str(data["chunk_id"]), "start": int(data["start"]), "end": int(data["end"])}
        except (KeyError, TypeError, ValueError):
            return gr.skip(), gr.skip()
        return _show_source({**where, "page": None, "zoom": render.ZOOMS[0]})

    def viewer_action(where, evt: gr.EventData):
        action = (getattr(evt, "_data", None) or {}).get("action")
        if not where or action == "close":
            return render.VIEWER_EMPTY, {}
        page, zoom = where.get("page") or 1, where.get("zoom", render.ZOOMS[0])
        if action in ("prev", "next"):
            page = min(max(1, page + (1 if action == "next" else -1)), where.get("n_pages") or page)
        elif action in ("zoom-in", "zoom-out"):
            steps = render.ZOOMS
            i = steps.index(zoom) if zoom in steps else 0
            zoom = steps[min(len(steps) - 1, i + 1)] if action == "zoom-in" else steps[max(0, i - 1)]
        else:
            return gr.skip(), gr.skip()
        return _show_source({**where, "page": page, "zoom": zoom})

    def _show_source(where: dict):
        try:
            view = assistant.source_view(
                where["chunk_id"], start=where["start"], end=where["end"], page=where["page"],
                scale=min(VIEW_SCALE * where["zoom"], MAX_VIEW_SCALE),
            )
        except CultureRagError as exc:
            return render.message_html(str(exc), error=True), {}
        title = next((p.title for p in assistant.papers() if p.paper_id == view.paper_id), view.source)
        shown = render.source_json(view, title)
        return render.viewer_html(shown, where["zoom"]), {**where, "page": view.page, "n_pages": view.n_pages}

    # -- library --

    def library_view():
        papers = [render.paper_json(p) for p in assistant.papers()]
        return render.library_html(papers), gr.update(choices=_paper_choices(papers), value=None)

    def filtered_view(author, year, title):
        """The Library table under its filters (author words, a year or range, title words)."""
        try:
            chosen = assistant.papers(author=author or None, year=(year or "").strip() or None, title=title or None)
        except CultureRagError as exc:
            return render.message_html(str(exc), error=True), []
        everything = len(assistant.papers())
        return render.library_html([render.paper_json(p) for p in chosen], of=everything), [p.paper_id for p in chosen]

    def ask_within(selected):
        if not selected:
            return gr.skip(), gr.skip()
        return gr.update(value=list(selected)), gr.Tabs(selected="chat")

    def scope_view(scope):
        """The chat's paper picker after the library changed: removed papers leave the scope."""
        papers = [render.paper_json(p) for p in assistant.papers()]
        ids = {p["paper_id"] for p in papers}
        return gr.update(choices=_paper_choices(papers), value=[pid for pid in (scope or []) if pid in ids])

    def add_files(files, password, progress=gr.Progress()):
        files = [f for f in (files or []) if f]
        if not files:
            message = render.message_html("Choose one or more PDF, TXT or Markdown files first.")
            return (message, *library_view(), None, gr.skip())
        if len(files) > MAX_FILES_PER_ADD:
            message = f"{len(files)} files at once; add at most {MAX_FILES_PER_ADD} per batch."
            return (render.message_html(message, error=True), *library_view(), None, gr.skip())

        def report_progress(stage: str, done: int, total: int) -> None:
            unit = "files" if stage == "reading" else "passages"
            progress((done, total), desc=f"{stage.capitalize()} {done}/{total} {unit}", unit=unit)

        with write_lock:
            progress(0, desc="Reading files")
            try:
                # The browser's file names are only suggestions: add() keeps each upload under a
                # safe name that clashes with nothing.
                added = assistant.add([Path(f) for f in files], password=password or None, progress=report_progress)
            except CultureRagError as exc:
                message = f"Nothing was changed: {exc}. The library is as it was."
                return (render.message_html(message, error=True), *library_view(), None, gr.skip())
        report = render.report_json(added)
        # Only files waiting for a password stay in the picker, ready for "Add to library" again.
        locked = [o.given for o in added.outcomes if o.status == "encrypted" and o.given]
        return (render.outcomes_html(report), *library_view(), report, locked or None)

    def remove_paper(paper_id):
        if not paper_id:
            return (render.message_html("Choose a paper to remove first."), *library_view())
        try:
            report = _remove(paper_id)
        except CultureRagError as exc:
            return (render.message_html(str(exc), error=True), *library_view())
        message = f"Removed; {report['total_papers']} papers remain. The file moved to the corpus folder's .trash/."
        return (render.message_html(message), *library_view())

    def _remove(paper_id: str) -> dict:
        with write_lock:
            return render.report_json(assistant.remove(paper_id))

    # -- API (JSON in, JSON out) --

    def ask(
        question: str,
        mode: str = "extractive",
        k: int = 5,
        history: list[str] | None = None,
        papers: list[str] | None = None,
    ) -> dict:
        """Answer a question from the indexed papers, with citations (exact quotes and their offsets).
        `papers`: paper ids to search within (all papers when empty)."""
        _check_mode_and_k(mode, k)
        try:
            history = [str(h) for h in (history or [])][-3:]
            answer = assistant.ask(question, mode=mode, k=int(k), history=history, papers=papers or None)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return render.answer_json(answer)

    def search(question: str, k: int = 5, papers: list[str] | None = None) -> dict:
        """The passages that best match a question, best first; within `papers` (ids) when given."""
        _check_mode_and_k("extractive", k)
        try:
            hits = assistant.search(question, int(k), papers=papers or None)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return {"question": question, "hits": [render.hit_json(h) for h in hits]}

    def papers(author: str = "", year: str = "", title: str = "") -> dict:
        """The indexed papers; filtered by author words, a year or range (2018-2021) and title words."""
        try:
            chosen = assistant.papers(author=author or None, year=year or None, title=title or None)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return {"papers": [render.paper_json(p) for p in chosen]}

    def source(chunk_id: str, start: int | None = None, end: int | None = None, page: int | None = None,
               scale: float | None = None) -> dict:
        """A citation's source: the PDF page as a base64 PNG with the quote's boxes (pixels, and
        fractions of the page), or a text paper's section with the quote's offsets in it."""
        try:
            view = assistant.source_view(chunk_id, start=start, end=end, page=page, scale=scale)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return view.to_dict(with_png=True)

    def export_markdown(answers: list[dict]) -> dict:
        """Answers as returned by /ask, exported: Markdown with one numbered reference list, and
        the cited papers as BibTeX."""
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise gr.Error("answers must be a list of the objects /ask returns")
        try:
            return {"markdown": export.conversation_markdown(answers), "bibtex": export.bibtex(export.cited_papers(answers))}
        except (KeyError, TypeError, ValueError) as exc:
            raise gr.Error(f"answers: not the objects /ask returns ({type(exc).__name__}: {exc})") from None

    def remove(paper_id: str) -> dict:
        """Remove a paper from the index (its file moves to the corpus folder's .trash/)."""
        try:
            return _remove(paper_id)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None

    def feedback(answer: dict, kind: str, comment: str = "", request: gr.Request = None) -> dict:
        """Record a reader's verdict on an answer (the dict /ask returned): kind is helpful,
        wrong_citation or should_have_declined; the comment is optional."""
        if not isinstance(answer, dict):
            raise gr.Error("answer: expected the answer object that /ask returned")
        sources = {p.paper_id: p.source for p in assistant.papers()}
        generation = answer.get("generation")
        try:
            entry = record_feedback(
                assistant.index_dir,
                question=answer.get("question") or "",
                answer=answer.get("text") or "",
                citations=citations_from_answer(answer, sources),
                kind=kind,
                comment=comment or "",
                user=getattr(request, "username", None),
                generation=generation if isinstance(generation, int) else None,
            )
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return {"recorded": True, "time": entry.time, "user": entry.user, "kind": entry.kind}

    def send_feedback(state, kind, comment, request: gr.Request):
        """The page's feedback form: a verdict on the answer on show (the one its sources show)."""
        state = state or {}
        answer = state.get("answers", {}).get(str(state.get("current")))
        if answer is None:
            return render.message_html("Ask a question first: feedback is about the answer on show."), gr.skip()
        if not kind:
            return render.message_html("Choose what is right or wrong with the answer first."), gr.skip()
        try:
            feedback(answer, kind, comment or "", request)
        except gr.Error as exc:
            return render.message_html(str(exc.message), error=True), gr.skip()
        return render.message_html(f"Thank you: recorded as {kind.replace('_', ' ')}."), ""

    with gr.Blocks(title="culture-rag", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        state = gr.State({})
        with gr.Sidebar(label="Settings", open=False, position="left"):
            gr.Markdown("### Answer settings")
            mode = gr.Radio(MODES, value=settings.answer_mode, label="Answer mode", elem_id="mode")
            gr.Textbox(
                value=settings.endpoint_url or "",
                label="Endpoint URL",
                info="Set when the server starts (CULTURE_RAG_ENDPOINT_URL).",
                placeholder="not configured",
                interactive=False,
                elem_id="endpoint-url",
            )
            k = gr.Slider(1, MAX_K, value=min(settings.top_k, MAX_K), step=1, label="Passages to search", elem_id="k")
            show_removed = gr.Checkbox(
                False, label="Show sentences removed by the citation check", elem_id="show-removed"
            )
        gr.Markdown(
            "# culture-rag\nQuestions answered from the indexed research papers, every sentence with its source.",
            elem_id="title",
        )
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        chat = gr.Chatbot(
                            label="Conversation",
                            elem_id="chat",
                            height=560,
                            sanitize_html=True,
                            latex_delimiters=[],  # a '$' in a paper is money, not math
                            allow_file_downloads=False,
                            feedback_options=None,
                            placeholder="Ask about the papers in the library. Try one of these:",
                            examples=[{"text": q} for q in EXAMPLES],
                            buttons=["copy"],
                        )
                        scope = gr.Dropdown(
                            label="Search within papers",
                            info="Leave empty to search the whole library.",
                            choices=[],
                            multiselect=True,
                            elem_id="paper-scope",
                        )
                        with gr.Row():
                            question = gr.Textbox(
                                placeholder="Ask a question about the papers…",
                                show_label=False,
                                scale=6,
                                max_length=settings.max_query_chars,
                                autofocus=True,
                                elem_id="question",
                            )
                            send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="send")
                        with gr.Row():
                            clear = gr.Button("New conversation", size="sm", elem_id="new-conversation")
                            export_answer = gr.Button("Export answer", size="sm", elem_id="export-answer")
                            export_all = gr.Button("Export conversation", size="sm", elem_id="export-conversation")
                        exported = gr.File(
                            label="Markdown and BibTeX", file_count="multiple", visible=False,
                            interactive=False, elem_id="exported",
                        )
                        export_note = gr.HTML(elem_id="export-note", js_on_load=None)
                        with gr.Accordion("Feedback on the answer on show", open=False, elem_id="feedback"):
                            verdict = gr.Radio(
                                FEEDBACK_KINDS, label="The answer is…", elem_id="feedback-kind"
                            )
                            comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=2000,
                                                 elem_id="feedback-comment")
                            send_verdict = gr.Button("Send feedback", size="sm", elem_id="feedback-send")
                            verdict_note = gr.HTML(elem_id="feedback-note", js_on_load=None)
                    with gr.Column(scale=2):
                        viewer = gr.HTML(render.VIEWER_EMPTY, elem_id="viewer", js_on_load=VIEWER_JS)
                        where = gr.State({})
                        sources = gr.HTML(
                            render.sources_html(None, None, False), elem_id="sources", js_on_load=SOURCES_JS
                        )
            with gr.Tab("Library", id="library") as library_tab:
                with gr.Row(equal_height=True):
                    f_author = gr.Textbox(label="Author", placeholder="words of a name", elem_id="filter-author")
                    f_year = gr.Textbox(label="Year", placeholder="2019 or 2018-2021", elem_id="filter-year")
                    f_title = gr.Textbox(label="Title words", placeholder="any order", elem_id="filter-title")
                with gr.Row():
                    filter_button = gr.Button("Filter", size="sm", elem_id="filter")
                    within = gr.Button("Ask within these papers", size="sm", elem_id="ask-within")
                selected = gr.State([])
                library = gr.HTML(elem_id="library", label="Library", js_on_load=None)
                with gr.Row():
                    with gr.Column(scale=3):
                        files = gr.File(
                            file_count="multiple",
                            file_types=list(SUPPORTED_SUFFIXES),
                            label="Add papers (PDF, TXT, Markdown)",
                            elem_id="upload",
                        )
                        password = gr.Textbox(
                            "",
                            type="password",
                            label="Password for encrypted PDFs (optional)",
                            elem_id="password",
                        )
                        add_button = gr.Button("Add to library", variant="primary", elem_id="add")
                    with gr.Column(scale=2):
                        outcome = gr.HTML(elem_id="outcome", label="Outcome", js_on_load=None)
                        report = gr.JSON(visible=False, label="Report")
                        gr.Markdown("#### Remove a paper")
                        to_remove = gr.Dropdown(label="Paper", choices=[], elem_id="remove-choice")
                        remove_button = gr.Button("Remove paper", variant="stop", elem_id="remove")

        query = {"concurrency_id": "query", "concurrency_limit": QUERY_CONCURRENCY}
        writes = {"concurrency_id": "library", "concurrency_limit": 1, "trigger_mode": "once"}
        chat_io = ([question, chat, mode, k, show_removed, scope, state], [chat, sources, state, question])
        question.submit(respond, *chat_io, api_visibility="private", **query)
        send.click(respond, *chat_io, api_visibility="private", **query)
        chat.example_select(use_example, None, question, queue=False, api_visibility="private").then(
            respond, *chat_io, api_visibility="private", **query
        )
        chat.select(select_message, [state, show_removed], [sources, state], queue=False, api_visibility="private")
        show_removed.change(redraw_sources, [state, show_removed], sources, queue=False, api_visibility="private")
        clear.click(new_conversation, None, [chat, sources, state, question], queue=False, api_visibility="private")
        chat.clear(new_conversation, None, [chat, sources, state, question], queue=False, api_visibility="private")

        filters = [f_author, f_year, f_title]
        refilter = {"fn": filtered_view, "inputs": filters, "outputs": [library, selected], "queue": False,
                    "api_visibility": "private"}
        for trigger in (filter_button.click, f_author.submit, f_year.submit, f_title.submit):
            trigger(**refilter)
        within.click(ask_within, selected, [scope, tabs], queue=False, api_visibility="private")
        sources.click(open_source, None, [viewer, where], api_visibility="private", **query)
        viewer.click(viewer_action, where, [viewer, where], api_visibility="private", **query)
        send_verdict.click(
            send_feedback, [state, verdict, comment], [verdict_note, comment], queue=False, api_visibility="private"
        )
        for button, which in ((export_answer, "answer"), (export_all, "conversation")):
            button.click(
                export_files, [state, gr.State(which)], [exported, export_note], queue=False, api_visibility="private"
            )
        library_io = ([files, password], [outcome, library, to_remove, report, files])
        rescope = {"fn": scope_view, "inputs": scope, "outputs": scope, "queue": False, "api_visibility": "private"}
        files.upload(add_files, *library_io, api_visibility="private", **writes).then(**rescope).then(**refilter)
        add_button.click(add_files, *library_io, api_name="add", **writes).then(**rescope).then(**refilter)
        remove_button.click(
            remove_paper, to_remove, [outcome, library, to_remove], api_visibility="private", **writes
        ).then(**rescope).then(**refilter)
        demo.load(library_view, None, [library, to_remove], queue=False, api_visibility="private").then(**rescope).then(**refilter)
        # Another session may have changed the library since this page loaded.
        library_tab.select(library_view, None, [library, to_remove], queue=False, api_visibility="private").then(
            **refilter
        )

        gr.api(ask, api_name="ask", **query)
        gr.api(search, api_name="search", **query)
        gr.api(papers, api_name="papers", queue=False)
        gr.api(export_markdown, api_name="export", queue=False)
        gr.api(source, api_name="source", **query)
        gr.api(remove, api_name="remove", concurrency_id="library", concurrency_limit=1)
        gr.api(feedback, api_name="feedback", queue=False)

    # Queue positions go out once a second, not to every waiting user each time a job starts:
    # with dozens waiting, the per-job broadcast costs more CPU than the answers.
    demo.queue(default_concurrency_limit=QUERY_CONCURRENCY, max_size=QUEUE_MAX, status_update_rate=1.0)
    return demo


def _paper_choices(papers: list[dict]) -> list[tuple[str, str]]:
    return [(f"{p['title']} ({p['source']})", p["paper_id"]) for p in papers]


def _check_mode_and_k(mode: str, k: int) -> None:
    if mode not in {m for _, m in MODES}:
        raise gr.Error(f"unknown mode {mode!r}; use extractive, local or endpoint")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise gr.Error(f"k must be a whole number from 1 to {MAX_K}")


def _unique(folder: Path, name: str) -> Path:
    from culture_rag.files import unique_name  # here, not at the top: one hunk while app/ moves (issue 14)

    return folder / unique_name(name, lambda candidate: (folder / candidate).exists())


# --- serving -------------------------------------------------------------------------------------

API = "/gradio_api"
# What the page and gradio_client need; everything else Gradio mounts (monitoring, run history,
# proxying, MCP, PWA manifest, profiling, the vibe editor, …) answers 404.
ALLOWED_EXACT = {
    "/", "/config", "/favicon.ico", "/theme.css",
    f"{API}/info", f"{API}/theme.css", f"{API}/upload", f"{API}/upload_progress", f"{API}/queue/join",
    f"{API}/queue/data", f"{API}/cancel", f"{API}/startup-events", f"{API}/reset",
    f"{API}/run/predict",  # events outside the queue (page load, clicks that only redraw)
}
ALLOWED_PREFIXES = ("/assets/", "/static/", "/svelte/", f"{API}/heartbeat/", f"{API}/file=", f"{API}/call/")
# With --auth: the login form and gradio_client post to /login; /logout ends the session. (The
# page and the client never call /gradio_api/login_check or /gradio_api/token.)
LOGIN_ROUTES = {"/login", "/logout"}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Belt and braces for "no external images or links from documents": even if markup slipped
    # through, the browser would load nothing from another origin.
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
            # Gradio's own templates and the page script need inline code and eval.
            b"style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
            b"font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        ),
    ),
]


def route_allowed(path: str, login: bool = False) -> bool:
    exact = ALLOWED_EXACT | LOGIN_ROUTES if login else ALLOWED_EXACT
    if path in exact or path.rstrip("/") in exact:
        return True
    if not path.startswith(ALLOWED_PREFIXES):
        return False
    if path.startswith(f"{API}/file="):
        target = path[len(f"{API}/file=") :].lower()
        return not (target.startswith(("http:", "https:", "//")) or "://" in target)  # no fetching for others
    return True


class RouteGuard:
    """ASGI middleware: only the routes the app uses, with security headers on every answer."""

    def __init__(self, app, login: bool = False) -> None:
        self.app = app
        self.login = login

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not route_allowed(scope["path"], self.login):
            if scope["type"] == "http":
                await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def check_exposure(host: str, users: UsersFile | None) -> None:
    """Refuse to serve other machines without logins: any address but loopback needs --auth."""
    if users is None and not is_loopback(host):
        raise ExposureError(
            f"refusing to serve on {host} without logins: other machines could read and change the library. "
            "Pass --auth users.toml (create entries with `culture-rag users add NAME --auth users.toml`), "
            "or bind 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 and ::1, or a name that resolves to nothing else (localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False  # the bind fails anyway; refusing here keeps the message about logins honest
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def login_check(users: UsersFile):
    """Gradio's auth callable. Async, with the hash in a worker thread: Argon2 takes a tenth of a
    second by design, and a blocking check would stall every page on the server meanwhile."""

    async def check(name: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(users.verify, name, password)

    return check


def serve(
    demo: gr.Blocks,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 7860,
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


def limit_threads() -> None:
    """Queries run side by side on few cores: one BLAS thread each unless told otherwise
    (OMP/OPENBLAS_NUM_THREADS), so concurrent queries do not thrash. torch needs nothing here:
    questions and passages run in ONNX Runtime by default, and the embedder sets torch's
    threads per call when it is used (importing torch only to set them cost 5 s of start-up)."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")


def launch(settings: Settings, host: str = "127.0.0.1", port: int = 7860, auth: Path | None = None) -> None:
    """Load (or build) the index, warm the model, and serve until interrupted; with `auth` (a
    users.toml) only its users get in."""
    users = UsersFile(auth) if auth is not None else None
    check_exposure(host, users)  # before the slow part
    assistant = open_assistant(settings)
    limit_threads()
    assistant.warm_up()
    # Adding papers from the Library tab is quick once the passage model and the PDF parser are
    # up; they start behind the chat, which answers meanwhile.
    threading.Thread(target=assistant.warm_up, kwargs={"writes": True}, daemon=True).start()
    logins = f"; logins from {users.path} ({len(users.current().hashes)} users)" if users else ""
    print(f"culture-rag: {len(assistant.papers())} papers in {assistant.index_dir}; serving on http://{host}:{port}{logins}")
    serve(build_app(assistant), settings, host=host, port=port, block=True, users=users)
