"""What the web chat shows: engine objects turned into JSON-friendly dicts (the API returns
these as they are) and those dicts into escaped HTML or Markdown for the page.

Every string that comes from a document, a file name or a user is treated as untrusted text:
HTML-escaped, and in Markdown also stripped of the syntax that would make a link, an image
or a formula out of it. The only markup on the page is the markup written here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

# Engine objects → JSON: one shape for the API and the CLI.
from culture_rag.serialize import (  # noqa: E402,F401
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
                "</details>"
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


# --- the library -------------------------------------------------------------------------------


def library_html(papers: list[dict]) -> str:
    if not papers:
        return '<p class="library-empty">The library is empty. Add PDF, TXT or Markdown papers below.</p>'
    rows = "".join(
        "<tr>"
        f'<td class="title">{esc(p["title"])}</td>'
        f"<td>{_authors(p['authors'])}</td>"
        f"<td class=\"num\">{esc(p['n_pages']) if p['n_pages'] else '—'}</td>"
        f"<td class=\"num\">{p['n_chunks']}</td>"
        f"<td>{esc(p['added_at'].replace('T', ' ').rstrip('Z'))}</td>"
        f'<td class="file">{esc(p["source"])}</td>'
        "</tr>"
        for p in papers
    )
    total = sum(p["n_chunks"] for p in papers)
    return (
        f'<p class="library-summary">{len(papers)} papers, {total} passages</p>'
        '<table class="library"><thead><tr><th>Title</th><th>Authors</th><th>Pages</th><th>Chunks</th>'
        f"<th>Added (UTC)</th><th>File</th></tr></thead><tbody>{rows}</tbody></table>"
    )


_STATUS_TEXT = {
    "indexed": "added",
    "unchanged": "already in the library",
    "removed": "removed",
}


def outcomes_html(report: dict) -> str:
    items = []
    for o in report["outcomes"]:
        ok = o["status"] in _STATUS_TEXT
        label = _STATUS_TEXT.get(o["status"], f"not added: {o['status'].replace('_', ' ')}")
        detail = esc(o["detail"])
        if o["status"] == "indexed":
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
