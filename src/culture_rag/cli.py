"""The `culture-rag` command: a thin layer over `Assistant`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import CultureRagError
from .serialize import answer_json, hit_json, paper_json, report_json

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Ask research papers questions, with citations.")

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: index/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings(index: Path | None, **updates):
    from .settings import Settings

    settings = Settings()
    changes = {k: v for k, v in {"index_dir": index, **updates}.items() if v is not None}
    return settings.model_copy(update=changes) if changes else settings


def _progress():
    """A tqdm bar per stage; only the CLI and the app show progress."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            unit = "chunk" if stage == "embedding" else "file"
            bar = bars[stage] = tqdm(total=total, initial=done, desc=stage, unit=unit, file=sys.stderr)
        bar.total = total  # embedding's total grows as papers are read
        bar.n = done
        bar.refresh()
        if done >= total:
            bars.pop(stage).close()  # a later paper opens a new bar

    return update


def _assistant(settings, must_exist: bool = True):
    from .assistant import Assistant

    assistant = Assistant(settings)
    if must_exist:
        assistant.reload()
    else:
        assistant._reload_if_present()
    return assistant


def _print_report(report, as_json: bool) -> None:
    """Per-file rows, then a table of outcomes with their timings (Markdown, so it can go into
    a README as printed), then the state of the index."""
    order = ["indexed", "unchanged", "removed", "encrypted", "corrupt", "no_text", "empty", "timeout", "crashed", "too_large"]
    statuses = sorted({o.status for o in report.outcomes}, key=lambda s: (order.index(s) if s in order else len(order), s))
    summary = []
    for status in statuses:
        group = [o for o in report.outcomes if o.status == status]
        slowest = max(group, key=lambda o: o.seconds)
        summary.append(
            {
                "outcome": status,
                "files": len(group),
                "chunks": sum(o.n_chunks for o in group),
                "seconds": round(sum(o.seconds for o in group), 3),
                "slowest_seconds": round(slowest.seconds, 3),
                "slowest_file": slowest.source,
            }
        )
    if as_json:
        typer.echo(json.dumps({**report_json(report), "summary": summary}, indent=1))
        return
    outcomes = sorted(report.outcomes, key=lambda o: (statuses.index(o.status), o.source))
    rows = [(o.source, o.status, f"{o.n_chunks}" if o.n_chunks else "", f"{o.seconds:.2f}s", o.detail) for o in outcomes]
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + ("  " + r[4] if r[4] else ""))
    if summary:
        header = ("outcome", "files", "chunks", "time (s)", "slowest file (s)")
        table = [
            (s["outcome"].replace("_", " "), str(s["files"]), str(s["chunks"]) if s["chunks"] else "-",
             f"{s['seconds']:.2f}", f"{s['slowest_file']} ({s['slowest_seconds']:.2f})")
            for s in summary
        ]
        table.append(("total", str(len(report.outcomes)), str(sum(s["chunks"] for s in summary)),
                      f"{sum(s['seconds'] for s in summary):.2f}", ""))
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        def line(cells):
            return "| " + " | ".join(c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
        typer.echo("")
        typer.echo(line(header))
        typer.echo("|" + "|".join(("-" * (w + 1) + ":") if i not in (0, 4) else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
        for r in table:
            typer.echo(line(r))
    counts = ", ".join(f"{s['files']} {s['outcome'].replace('_', ' ')}" for s in summary) or "nothing to do"
    typer.echo(
        f"\n{counts}. Embedded {report.embedded_chunks} chunks; {report.seconds:.1f} s in all (time per file is "
        f"reading and chunking; embedding is shared). The index holds {report.total_papers} papers, "
        f"{report.total_chunks} chunks (generation {report.generation})."
    )


@app.command()
def build(
    corpus_dir: Annotated[Optional[Path], typer.Argument(help="Folder of papers (default: corpus/).")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build or refresh the index: only new or changed papers are embedded."""
    settings = _settings(index, corpus_dir=corpus_dir)
    report = _assistant(settings, must_exist=False).build(settings.corpus_dir, progress=None if as_json else _progress())
    _print_report(report, as_json)
    if report.failed and not report.total_papers:
        raise typer.Exit(1)


@app.command()
def add(
    files: Annotated[list[Path], typer.Argument(help="PDF, TXT or Markdown files.")],
    password: Annotated[Optional[str], typer.Option(help="Password of encrypted PDFs.")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add papers to the index (copied into the corpus folder)."""
    report = _assistant(_settings(index), must_exist=False).add(files, password=password, progress=_progress())
    _print_report(report, as_json)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def remove(paper_id: str, index: IndexOpt = None) -> None:
    """Remove a paper from the index (its file moves to the corpus folder's .trash/)."""
    report = _assistant(_settings(index)).remove(paper_id)
    typer.echo(f"removed {paper_id}; the index holds {report.total_papers} papers, {report.total_chunks} chunks.")


@app.command()
def papers(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed papers."""
    listing = _assistant(_settings(index)).papers()
    if as_json:
        typer.echo(json.dumps([paper_json(p) for p in listing], indent=1, ensure_ascii=False))
        return
    for p in listing:
        pages = f"{p.n_pages} pages" if p.n_pages else p.kind
        typer.echo(f"{p.paper_id}\n  {p.title}\n  {', '.join(p.authors) or 'authors unknown'} · {pages} · {p.n_chunks} chunks · added {p.added_at}")


@app.command()
def search(
    question: str,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages to return.")] = None,
    paper: PaperOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the passages that best match a question."""
    hits = _assistant(_settings(index)).search(question, k, papers=paper or None)
    if as_json:
        typer.echo(json.dumps([hit_json(h) for h in hits], indent=1, ensure_ascii=False))
        return
    for n, h in enumerate(hits, start=1):
        typer.echo(f"[{n}] {h.paper.title} — {h.chunk.location}  (score {h.score:.4f}, dense #{h.dense_rank}, keyword #{h.keyword_rank})")
        typer.echo("    " + h.chunk.text[:400].replace("\n", " ") + ("…" if len(h.chunk.text) > 400 else ""))


ModeOpt = Annotated[Optional[str], typer.Option("--mode", help="extractive (default), local or endpoint.")]
PaperOpt = Annotated[
    Optional[list[str]], typer.Option("--paper", help="Search only this paper (its id, see `papers`); repeat for several.")
]


@app.command()
def ask(
    question: str,
    mode: ModeOpt = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages to retrieve.")] = None,
    endpoint: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL (endpoint mode).")] = None,
    paper: PaperOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question with cited passages, or say that the papers do not answer it."""
    assistant = _assistant(_settings(index, endpoint_url=endpoint))
    answer = assistant.ask(question, mode=mode, k=k, papers=paper or None)
    if as_json:
        typer.echo(json.dumps(answer_json(answer), indent=1, ensure_ascii=False))
        return
    typer.echo(answer.text)
    if answer.notice:
        typer.echo(f"\n({answer.notice})")
    for c in answer.citations:
        typer.echo(f"\n[{c.n}] {c.paper.title} — {', '.join(c.paper.authors)} — {c.location}\n    “{c.quote}”")
    if not answer.answered:
        typer.echo("\nClosest passages:")
        for h in answer.passages[:3]:
            typer.echo(f"  - {h.paper.title} — {h.chunk.location}: {h.chunk.text[:200].replace(chr(10), ' ')}…")
    for sentence in answer.removed:
        typer.echo(f"\n[removed by the citation check] {sentence}")


@app.command()
def show(
    chunk_id: Annotated[str, typer.Argument(help="A passage's chunk id (`search --json` or an answer's citations).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the page image (PNG) here.")] = None,
    page: Annotated[Optional[int], typer.Option("--page", help="Show this page instead of the quote's (1-based).")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Pixels per PDF point (1.5 = 108 dpi).")] = None,
    start: Annotated[Optional[int], typer.Option("--start", help="Quote start, an offset in the paper's text.")] = None,
    end: Annotated[Optional[int], typer.Option("--end", help="Quote end (default: the chunk's first sentence).")] = None,
    password: Annotated[Optional[str], typer.Option("--password", help="Password of an encrypted PDF.")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a passage in its source: the PDF page with the quote highlighted, or a text paper's section."""
    assistant = _assistant(_settings(index))
    try:
        view = assistant.source_view(chunk_id, start=start, end=end, page=page, scale=scale, password=password)
    finally:
        assistant.close()  # the renderer's process
    if out is not None and view.png is not None:
        out.write_bytes(view.png)
    elif out is not None:
        out.write_text(view.section_text or "", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps({**view.to_dict(), "out": str(out) if out else None}, indent=1, ensure_ascii=False))
        return
    if view.png is not None:
        where = f"page {view.page} of {view.n_pages} ({view.width}x{view.height} px, scale {view.scale:g})"
        typer.echo(f"{view.source}, {where}{f' -> {out}' if out else ''}; the quote is on page {view.cited_page}")
        for b in view.boxes:
            typer.echo(f"  box {b.left:.1f},{b.top:.1f} - {b.right:.1f},{b.bottom:.1f} px")
    elif view.section_text is not None:
        text = view.section_text
        typer.echo(text[: view.quote_start] + "[[" + text[view.quote_start : view.quote_end] + "]]" + text[view.quote_end :])
    typer.echo(f"quote: “{view.quote}”")
    if view.note:
        typer.echo(f"({view.note})")


@app.command("eval")
def evaluate(
    questions: Annotated[Path, typer.Argument(help="Question set in the JSONL format of FORMAT.md.")],
    mode: ModeOpt = None,
    endpoint: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL (endpoint mode).")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a question set: retrieval, answers, citations, abstention and latency."""
    from . import evaluation

    assistant = _assistant(_settings(index, endpoint_url=endpoint))
    assistant.warm_up()  # latencies are warm; cold start is measured by bench/coldstart.py
    outcomes = evaluation.run(assistant, evaluation.read_questions(questions), mode=mode)
    result = evaluation.metrics(outcomes, similarity=assistant.similarity)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:20} {value:.3f}" if isinstance(value, float) else f"{key:20} {value}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CultureRagError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the app on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web chat.")] = 7860,
) -> None:
    """Start the web chat."""
    from .webapp.server import launch

    launch(_settings(index), host=host, port=port)
