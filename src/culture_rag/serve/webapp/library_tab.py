"""The Library tab: the indexed papers under author, year and title filters, adding files (PDF,
TXT, Markdown; a password for encrypted PDFs), removing a paper, and asking within the papers
on show. Every change also updates the Chat tab's paper picker."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from culture_rag.assistant import Assistant
from culture_rag.errors import CultureRagError
from culture_rag.ingest.papers import SUPPORTED_SUFFIXES
from culture_rag.serve.webapp import render
from culture_rag.serve.webapp.api import remove_paper

MAX_FILES_PER_ADD = 20


def paper_choices(papers: list[dict]) -> list[tuple[str, str]]:
    return [(f"{p['title']} ({p['source']})", p["paper_id"]) for p in papers]


def library_tab(
    assistant: Assistant, write_lock: threading.Lock, demo: gr.Blocks, tabs: gr.Tabs, scope: gr.Dropdown
) -> None:
    """Lay out and wire the Library tab on `demo`. `tabs`: switched to the chat by "Ask within
    these papers"; `scope`: the chat's paper picker, kept to the papers the library holds."""

    def library_view():
        papers = [render.paper_json(p) for p in assistant.papers()]
        return render.library_html(papers), gr.update(choices=paper_choices(papers), value=None)

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
        return gr.update(choices=paper_choices(papers), value=[pid for pid in (scope or []) if pid in ids])

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

    def remove_chosen(paper_id):
        if not paper_id:
            return (render.message_html("Choose a paper to remove first."), *library_view())
        try:
            report = remove_paper(assistant, write_lock, paper_id)
        except CultureRagError as exc:
            return (render.message_html(str(exc), error=True), *library_view())
        message = f"Removed; {report['total_papers']} papers remain. The file moved to the corpus folder's .trash/."
        return (render.message_html(message), *library_view())

    # -- layout --

    with gr.Tab("Library", id="library") as tab:
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

    # -- events: writes one at a time; after each, the chat's picker and the filtered table follow --

    writes = {"concurrency_id": "library", "concurrency_limit": 1, "trigger_mode": "once"}
    filters = [f_author, f_year, f_title]
    refilter = {"fn": filtered_view, "inputs": filters, "outputs": [library, selected], "queue": False,
                "api_visibility": "private"}
    for trigger in (filter_button.click, f_author.submit, f_year.submit, f_title.submit):
        trigger(**refilter)
    within.click(ask_within, selected, [scope, tabs], queue=False, api_visibility="private")
    library_io = ([files, password], [outcome, library, to_remove, report, files])
    rescope = {"fn": scope_view, "inputs": scope, "outputs": scope, "queue": False, "api_visibility": "private"}
    files.upload(add_files, *library_io, api_visibility="private", **writes).then(**rescope).then(**refilter)
    add_button.click(add_files, *library_io, api_name="add", **writes).then(**rescope).then(**refilter)
    remove_button.click(
        remove_chosen, to_remove, [outcome, library, to_remove], api_visibility="private", **writes
    ).then(**rescope).then(**refilter)
    demo.load(library_view, None, [library, to_remove], queue=False, api_visibility="private").then(**rescope).then(**refilter)
    # Another session may have changed the library since this page loaded.
    tab.select(library_view, None, [library, to_remove], queue=False, api_visibility="private").then(**refilter)
