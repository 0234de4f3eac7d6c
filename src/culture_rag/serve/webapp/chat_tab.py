"""The Chat tab and its answer settings: streamed, cited answers beside their sources, the source
viewer (a citation's page or section with the quote marked), export of an answer or the whole
conversation, and the readers' feedback form."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr

from culture_rag.assistant import Assistant
from culture_rag.errors import CultureRagError
from culture_rag.serve import export
from culture_rag.serve.webapp import render
from culture_rag.serve.webapp.api import MAX_K, MODES, record_verdict
from culture_rag.serve.webapp.assets import SOURCES_JS, VIEWER_JS
from culture_rag.settings import Settings

MAX_REMEMBERED_ANSWERS = 20
VIEW_SCALE = 1.5  # pixels per PDF point at 100%: 108 dpi, a letter page 918 px wide
MAX_VIEW_SCALE = 4.0  # per browser session, for re-showing an earlier answer's sources
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


@dataclass(frozen=True)
class AnswerControls:
    """The sidebar's settings that every question is asked with."""

    mode: gr.Radio
    k: gr.Slider
    show_removed: gr.Checkbox


def answer_settings(settings: Settings) -> AnswerControls:
    """The sidebar: answer mode, passages to search, and whether to show removed sentences."""
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
        show_removed = gr.Checkbox(False, label="Show sentences removed by the citation check", elem_id="show-removed")
    return AnswerControls(mode, k, show_removed)


def chat_tab(assistant: Assistant, controls: AnswerControls, query: dict) -> gr.Dropdown:
    """Lay out and wire the Chat tab on the Blocks being built. `query`: the concurrency group
    of questions. Returns the tab's paper picker, which the Library tab fills and narrows."""
    # Exports live as long as the app (Gradio serves them from its own copies), then go: the
    # handler below holds the folder, so it is removed when the app is.
    exports = tempfile.TemporaryDirectory(prefix="culture-rag-export-")

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

    def send_feedback(state, kind, comment, request: gr.Request):
        """The page's feedback form: a verdict on the answer on show (the one its sources show)."""
        state = state or {}
        answer = state.get("answers", {}).get(str(state.get("current")))
        if answer is None:
            return render.message_html("Ask a question first: feedback is about the answer on show."), gr.skip()
        if not kind:
            return render.message_html("Choose what is right or wrong with the answer first."), gr.skip()
        try:
            record_verdict(assistant, answer, kind, comment or "", getattr(request, "username", None))
        except gr.Error as exc:
            return render.message_html(str(exc.message), error=True), gr.skip()
        return render.message_html(f"Thank you: recorded as {kind.replace('_', ' ')}."), ""

    # -- the source viewer --

    def open_source(evt: gr.EventData):
        """A citation card's Open button: its page (PDF) or section (text) with the quote marked."""
        data = getattr(evt, "_data", None) or {}
        try:
            where = {"chunk_id": str(data["chunk_id"]), "start": int(data["start"]), "end": int(data["end"])}
        except (KeyError, TypeError, ValueError):
            return gr.skip(), gr.skip()
        return show_source({**where, "page": None, "zoom": render.ZOOMS[0]})

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
        return show_source({**where, "page": page, "zoom": zoom})

    def show_source(where: dict):
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

    # -- layout --

    with gr.Tab("Chat", id="chat"):
        state = gr.State({})  # per browser session: the questions as read, the answers, the one on show
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
                        max_length=assistant.settings.max_query_chars,
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
                    verdict = gr.Radio(FEEDBACK_KINDS, label="The answer is…", elem_id="feedback-kind")
                    comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=2000,
                                         elem_id="feedback-comment")
                    send_verdict = gr.Button("Send feedback", size="sm", elem_id="feedback-send")
                    verdict_note = gr.HTML(elem_id="feedback-note", js_on_load=None)
            with gr.Column(scale=2):
                viewer = gr.HTML(render.VIEWER_EMPTY, elem_id="viewer", js_on_load=VIEWER_JS)
                where = gr.State({})
                sources = gr.HTML(render.sources_html(None, None, False), elem_id="sources", js_on_load=SOURCES_JS)

    # -- events: private, the page's own (api.py has the named API) --

    show_removed = controls.show_removed
    chat_io = (
        [question, chat, controls.mode, controls.k, show_removed, scope, state], [chat, sources, state, question]
    )
    question.submit(respond, *chat_io, api_visibility="private", **query)
    send.click(respond, *chat_io, api_visibility="private", **query)
    chat.example_select(use_example, None, question, queue=False, api_visibility="private").then(
        respond, *chat_io, api_visibility="private", **query
    )
    chat.select(select_message, [state, show_removed], [sources, state], queue=False, api_visibility="private")
    show_removed.change(redraw_sources, [state, show_removed], sources, queue=False, api_visibility="private")
    clear.click(new_conversation, None, [chat, sources, state, question], queue=False, api_visibility="private")
    chat.clear(new_conversation, None, [chat, sources, state, question], queue=False, api_visibility="private")
    sources.click(open_source, None, [viewer, where], api_visibility="private", **query)
    viewer.click(viewer_action, where, [viewer, where], api_visibility="private", **query)
    send_verdict.click(
        send_feedback, [state, verdict, comment], [verdict_note, comment], queue=False, api_visibility="private"
    )
    # The choice is bound here, not passed as a gr.State: a component made at this point would
    # sit inside gr.Tabs beside the tabs, and Gradio then drew the Library tab twice.
    for button, which in ((export_answer, "answer"), (export_all, "conversation")):
        button.click(
            partial(export_files, which=which), state, [exported, export_note], queue=False, api_visibility="private"
        )
    return scope
