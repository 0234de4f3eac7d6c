"""The named API endpoints (JSON in, JSON out) that gradio_client calls: ask, search, papers,
source, export, remove and feedback; and the two writes the page shares with them, a reader's
verdict and a paper's removal, so that both paths do the same thing."""

from __future__ import annotations

import threading

import gradio as gr

from culture_rag.assistant import Assistant
from culture_rag.errors import CultureRagError
from culture_rag.serve import export
from culture_rag.serve.feedback import citations_from_answer, record_feedback
from culture_rag.serve.webapp import render

MAX_K = 20
MODES = [
    ("Extractive: exact sentences from the papers, no model", "extractive"),
    ("Local model (Qwen2.5-Coder 1.5B), checked against the passages", "local"),
    ("Endpoint (OpenAI-compatible), checked against the passages", "endpoint"),
]


def check_mode_and_k(mode: str, k: int) -> None:
    if mode not in {m for _, m in MODES}:
        raise gr.Error(f"unknown mode {mode!r}; use extractive, local or endpoint")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise gr.Error(f"k must be a whole number from 1 to {MAX_K}")


def remove_paper(assistant: Assistant, write_lock: threading.Lock, paper_id: str) -> dict:
    """Remove a paper under the app's write lock: one rebuild at a time, whatever path the request took."""
    with write_lock:
        return render.report_json(assistant.remove(paper_id))


def record_verdict(assistant: Assistant, answer: dict, kind: str, comment: str, user: str | None) -> dict:
    """Log a reader's verdict on an answer (the dict /ask returned) in the index folder."""
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
            user=user,
            generation=generation if isinstance(generation, int) else None,
        )
    except CultureRagError as exc:
        raise gr.Error(str(exc)) from None
    return {"recorded": True, "time": entry.time, "user": entry.user, "kind": entry.kind}


def add_api(assistant: Assistant, write_lock: threading.Lock, query: dict) -> None:
    """Register the endpoints on the Blocks being built. `query`: the concurrency group that
    questions share with the page, so API callers and readers wait in one line."""

    # Gradio reads each endpoint's signature (parameters and their types) and docstring (its
    # description) for the API page and gradio_client, so they are written for callers.
    def ask(
        question: str,
        mode: str = "extractive",
        k: int = 5,
        history: list[str] | None = None,
        papers: list[str] | None = None,
    ) -> dict:
        """Answer a question from the indexed papers, with citations (exact quotes and their offsets).
        `papers`: paper ids to search within (all papers when empty)."""
        check_mode_and_k(mode, k)
        try:
            history = [str(h) for h in (history or [])][-3:]
            answer = assistant.ask(question, mode=mode, k=int(k), history=history, papers=papers or None)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None
        return render.answer_json(answer)

    def search(question: str, k: int = 5, papers: list[str] | None = None) -> dict:
        """The passages that best match a question, best first; within `papers` (ids) when given."""
        check_mode_and_k("extractive", k)
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
            return remove_paper(assistant, write_lock, paper_id)
        except CultureRagError as exc:
            raise gr.Error(str(exc)) from None

    def feedback(answer: dict, kind: str, comment: str = "", request: gr.Request = None) -> dict:
        """Record a reader's verdict on an answer (the dict /ask returned): kind is helpful,
        wrong_citation or should_have_declined; the comment is optional."""
        return record_verdict(assistant, answer, kind, comment, getattr(request, "username", None))

    gr.api(ask, api_name="ask", **query)
    gr.api(search, api_name="search", **query)
    gr.api(papers, api_name="papers", queue=False)
    gr.api(export_markdown, api_name="export", queue=False)
    gr.api(source, api_name="source", **query)
    gr.api(remove, api_name="remove", concurrency_id="library", concurrency_limit=1)
    gr.api(feedback, api_name="feedback", queue=False)
