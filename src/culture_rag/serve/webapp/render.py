"""What the web chat shows: engine objects turned into JSON-friendly dicts (the API returns
these as they are) and those dicts into escaped HTML or Markdown for the page.

Every string that comes from a document, a file name or a user is treated as untrusted text:
HTML-escaped, and in Markdown also stripped of the syntax that would make a link, an image
or a formula out of it. The only markup on the page is the markup written here.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable

from culture_rag.ingest.build import FileStatus

# Engine objects → JSON: one shape for the API and the CLI.
from culture_rag.serve.serialize import (  # noqa: E402,F401
    answer_json,
    citation_json,
    hit_json,
    paper_json,
    report_json,
)

# --- escaping --------------------------------------------------------------------------------

_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$=^])")
# Autolinks need these patterns in the source text; an entity renders the same character
# but is decoded only after link detection, so documents cannot create links.
_AUTOLINK = [
    (re.compile(r"(?i)(?<=[a-z])(:)(?=//)"), "&#58;"),
    (re.compile(r"(?i)(?<=www)(\\\.)"), "&#46;"),
    (re.compile("@"), "&#64;"),
]


def md_text(text: str) -> str:
    """Untrusted text for a Markdown renderer: shown literally, never as a link, image, heading,
    formula or HTML."""
    out = html.escape(text, quote=False)
    out = _MD_PUNCT.sub(r"\\\1", out)
    for pattern, entity in _AUTOLINK:
        out = pattern.sub(entity, out)
    return out


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# --- chat messages -----------------------------------------------------------------------------

_MARKER = re.compile(r"\\\[(\d+)\\\]")  # an [n] marker after md_text


def source_id(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def answer_markdown(answer: dict, turn: int) -> str:
    """The assistant's chat message. [n] markers become links to the source cards of this turn."""
    if not answer["answered"]:
        body = (
            f"**{md_text(answer['text'])}**\n\n"
            "The closest passages are shown beside the chat; none of them says it."
        )
    else:
        # A broad answer has one point a line (led by the heading it comes from): a list.
        lines = [line for line in answer["text"].split("\n") if line.strip()]
        text = "\n".join(f"- {md_text(line)}" for line in lines) if len(lines) > 1 else md_text(answer["text"])
        body = _MARKER.sub(
            lambda m: f'<a class="cite" href="#{source_id(turn, int(m.group(1)))}">&#91;{m.group(1)}&#93;</a>', text
        )
    if answer.get("notice"):
        body += f"\n\n_{md_text(answer['notice'])}_"
    return body


def streaming_markdown(partial: str) -> str:
    return md_text(partial) + " ▍"


def error_markdown(message: str) -> str:
    return f"⚠️ {md_text(message)}"


# --- the sources panel -------------------------------------------------------------------------


def _passage_with_quote(passage: str, passage_start: int, start: int, end: int) -> str:
    a, b = start - passage_start, end - passage_start
    if not (0 <= a <= b <= len(passage)):
        return esc(passage)  # offsets from another text: show the passage, never a wrong highlight
    return f"{esc(passage[:a])}<mark>{esc(passage[a:b])}</mark>{esc(passage[b:])}"


def _authors(authors: Iterable[str]) -> str:
    authors = list(authors)
    return esc(", ".join(authors)) if authors else "authors unknown"


def sources_html(answer: dict | None, turn: int | None, show_removed: bool) -> str:
    if answer is None or turn is None:
        return (
            '<div class="sources empty"><h3>Sources</h3>'
            "<p>Ask a question: every sentence of an answer cites a passage, and the passages "
            "appear here with the quoted sentence highlighted.</p></div>"
        )
    parts = ['<div class="sources">']
    if answer["answered"]:
        parts.append(f"<h3>Sources <span class=\"count\">{len(answer['citations'])}</span></h3>")
        for i, c in enumerate(answer["citations"]):
            parts.append(
                f'<details class="source" id="{source_id(turn, c["n"])}"{" open" if i == 0 else ""}>'
                f'<summary><span class="n">[{c["n"]}]</span> <span class="title">{esc(c["title"])}</span> '
                f'<span class="loc">{esc(c["location"])}</span></summary>'
                f'<div class="meta"><span class="authors">{_authors(c["authors"])}</span></div>'
                '<blockquote class="passage">'
                f'{_passage_with_quote(c["passage"], c["passage_start"], c["start"], c["end"])}</blockquote>'
                f"{_open_button(c)}</details>"
            )
    else:
        parts.append(
            "<h3>Closest passages</h3><p class=\"declined\">The indexed papers do not answer this question. "
            "These passages came closest; none of them says it.</p>"
        )
        for i, h in enumerate(answer["passages"], start=1):
            parts.append(
                f'<details class="source closest" id="{source_id(turn, i)}"{" open" if i == 1 else ""}>'
                f'<summary><span class="n">{i}.</span> <span class="title">{esc(h["title"])}</span> '
                f'<span class="loc">{esc(h["location"])}</span></summary>'
                f'<div class="meta"><span class="authors">{_authors(h["authors"])}</span></div>'
                f'<blockquote class="passage">{esc(h["text"])}</blockquote></details>'
            )
    if show_removed and answer.get("removed"):
        items = "".join(f"<li>{esc(s)}</li>" for s in answer["removed"])
        parts.append(
            '<div class="removed"><h4>Removed by the citation check</h4>'
            f"<p>These generated sentences were not supported by the passage they cited.</p><ul>{items}</ul></div>"
        )
    t = answer["timings"]
    parts.append(
        f'<p class="timing">{esc(answer["mode"])} · search {t["search_ms"]:.0f} ms · '
        f'answer {t["answer_ms"]:.0f} ms</p></div>'
    )
    return "".join(parts)


def _open_button(c: dict) -> str:
    """The button that opens the cited page (or section) with the quote highlighted. Its data
    travels to the server as the event's payload; the server re-checks it against the index."""
    if not c.get("chunk_id"):
        return ""  # nothing to open it by
    where = f"page {c['page']}" if c.get("page") is not None else "section"
    return (
        f'<button type="button" class="open-source" data-chunk="{esc(c["chunk_id"])}" '
        f'data-start="{int(c["start"])}" data-end="{int(c["end"])}" data-n="{int(c["n"])}" '
        f'aria-label="Open the source of [{int(c["n"])}]: {esc(where)} of {esc(c["title"])}">'
        f"Open {esc(where)}</button>"
    )


# --- the source viewer -------------------------------------------------------------------------

VIEWER_EMPTY = '<div class="viewer empty" aria-hidden="true"></div>'


def _pct(value: float) -> str:
    return f"{100 * max(0.0, min(1.0, float(value))):.3f}%"


def source_json(view, title: str) -> dict:
    """What the viewer draws from a SourceView: the page as a data URL and the boxes as fractions."""
    image = f"data:image/png;base64,{base64.b64encode(view.png).decode('ascii')}" if view.png else None
    boxes = [{"x0": b.rel_left, "y0": b.rel_top, "x1": b.rel_right, "y1": b.rel_bottom} for b in view.boxes]
    return {
        "title": title, "kind": view.kind, "image": image, "boxes": boxes, "page": view.page, "n_pages": view.n_pages,
        "cited_page": view.cited_page, "on_cited_page": view.page == view.cited_page or view.section_text is not None,
        "quote": view.quote, "note": view.note, "text": view.section_text or view.quote,
        "quote_start": view.quote_start if view.section_text is not None else 0,
        "quote_end": view.quote_end if view.section_text is not None else len(view.quote),
        "section": view.section,
    }


def viewer_html(view: dict, zoom: float) -> str:
    """A cited page as an image with the quote's boxes laid over it (fractions of the page, so
    they stay on the words at any zoom), or a text paper's section with the quote marked."""
    title = esc(view["title"])
    if view.get("image"):
        marks = "".join(
            f'<div class="hl" aria-hidden="true" style="left:{_pct(b["x0"])};top:{_pct(b["y0"])};'
            f'width:{_pct(b["x1"] - b["x0"])};height:{_pct(b["y1"] - b["y0"])}"></div>'
            for b in view["boxes"]
        )
        body = (
            f'<div class="page" style="width:{100 * zoom:.0f}%">'
            f'<img src="{view["image"]}" alt="Page {int(view["page"])} of {title}" draggable="false">{marks}</div>'
        )
        where = f"Page {int(view['page'])} of {int(view['n_pages'])}"
    else:
        body = '<div class="section-text">' + _passage_with_quote(
            view["text"], 0, view["quote_start"], view["quote_end"]
        ) + "</div>"
        where = f"Section: {esc(view['section'])}" if view.get("section") else "Whole text"
    on_cited = view.get("on_cited_page", True)
    quote = (
        f'<p class="quote">Highlighted: “{esc(view["quote"])}”</p>'
        if on_cited and view.get("quote")
        else '<p class="quote">The quote is on page ' + esc(view.get("cited_page")) + ".</p>"
    )
    note = f'<p class="note">{esc(view["note"])}</p>' if view.get("note") else ""
    paged = view.get("image") is not None and view.get("n_pages")
    first, last = int(view.get("page") or 1) <= 1, int(view.get("page") or 1) >= int(view.get("n_pages") or 1)
    controls = (
        _control("prev", "Previous page", "‹ Prev", disabled=not paged or first)
        + f'<span class="where" aria-live="polite">{where}</span>'
        + _control("next", "Next page", "Next ›", disabled=not paged or last)
        + _control("zoom-out", "Zoom out", "−", disabled=not paged or zoom <= ZOOMS[0])
        + f'<span class="zoom">{zoom * 100:.0f}%</span>'
        + _control("zoom-in", "Zoom in", "+", disabled=not paged or zoom >= ZOOMS[-1])
        + _control("close", "Close the source viewer", "✕ Close")
    )
    return (
        f'<section class="viewer" tabindex="-1" role="region" aria-label="Source: {title}" '
        f'data-page="{esc(view.get("page"))}">'
        f'<header><span class="title">{title}</span><div class="controls">{controls}</div></header>'
        f'{quote}{note}<div class="canvas">{body}</div></section>'
    )


ZOOMS = (1.0, 1.5, 2.0, 3.0)


def _control(action: str, label: str, text: str, disabled: bool = False) -> str:
    return (
        f'<button type="button" data-action="{action}" aria-label="{esc(label)}" title="{esc(label)}"'
        f'{" disabled" if disabled else ""}>{esc(text)}</button>'
    )


# --- the library -------------------------------------------------------------------------------


def library_html(papers: list[dict], of: int | None = None) -> str:
    """The library table; `of`: the number of papers before filtering, when filtered."""
    if not papers:
        if of:
            return f'<p class="library-empty">None of the {of} papers matches the filters.</p>'
        return '<p class="library-empty">The library is empty. Add PDF, TXT or Markdown papers below.</p>'
    rows = "".join(
        "<tr>"
        f'<td class="title">{esc(p["title"])}{_reference_bits(p)}</td>'
        f"<td>{_authors(p['authors'])}</td>"
        f"<td class=\"num\">{esc(p['year']) if p.get('year') else '—'}</td>"
        f"<td class=\"num\">{esc(p['n_pages']) if p['n_pages'] else '—'}</td>"
        f"<td class=\"num\">{p['n_chunks']}</td>"
        f"<td>{esc(p['added_at'].replace('T', ' ').rstrip('Z'))}</td>"
        f'<td class="file">{esc(p["source"])}</td>'
        "</tr>"
        for p in papers
    )
    total = sum(p["n_chunks"] for p in papers)
    shown = f"{len(papers)} of {of} papers" if of is not None and of != len(papers) else f"{len(papers)} papers"
    return (
        f'<p class="library-summary">{shown}, {total} passages</p>'
        '<table class="library"><thead><tr><th>Title</th><th>Authors</th><th>Year</th><th>Pages</th><th>Chunks</th>'
        f"<th>Added (UTC)</th><th>File</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _reference_bits(p: dict) -> str:
    """Venue, DOI and arXiv id under the title, as plain text (never a link from a document)."""
    bits = [esc(p["venue"])] if p.get("venue") else []
    bits += [f"DOI {esc(p['doi'])}"] if p.get("doi") else []
    bits += [f"arXiv {esc(p['arxiv_id'])}"] if p.get("arxiv_id") else []
    return f'<div class="ref">{" · ".join(bits)}</div>' if bits else ""


_STATUS_TEXT = {
    FileStatus.INDEXED: "added",
    FileStatus.UNCHANGED: "already in the library",
    FileStatus.REMOVED: "removed",
}


def outcomes_html(report: dict) -> str:
    items = []
    for o in report["outcomes"]:
        ok = o["status"] in _STATUS_TEXT
        label = _STATUS_TEXT.get(o["status"], f"not added: {o['status'].replace('_', ' ')}")
        detail = esc(o["detail"])
        if o["status"] == FileStatus.INDEXED:
            detail = f"{o['n_chunks']} passages, {o['seconds']:.1f} s"
        elif o["status"] == "encrypted":
            detail += ". Type the password in the field above and press <b>Add to library</b> again."
        items.append(
            f'<li class="outcome {"ok" if ok else "error"} status-{esc(o["status"])}">'
            f'<span class="file">{esc(o["source"])}</span> — <span class="status">{esc(label)}</span>'
            f'{f"<div class=detail>{detail}</div>" if detail else ""}</li>'
        )
    summary = (
        f'The library holds {report["total_papers"]} papers, {report["total_chunks"]} passages '
        f'(took {report["seconds"]:.1f} s).'
    )
    return f'<div class="outcomes"><ul>{"".join(items)}</ul><p>{summary}</p></div>'


def message_html(text: str, error: bool = False) -> str:
    return f'<div class="outcomes"><p class="{"error" if error else "note"}">{esc(text)}</p></div>'
