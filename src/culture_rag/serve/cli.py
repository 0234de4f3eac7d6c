"""The `culture-rag` command: a thin layer over `Library` (writes) and `Assistant` (questions)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from culture_rag.errors import CultureRagError
from culture_rag.serve.serialize import answer_json, hit_json, paper_json, report_json

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Ask research papers questions, with citations.")

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: index/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings(index: Path | None, **updates):
    from culture_rag.settings import Settings

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


def _library(settings, create: bool = False):
    """The index of settings.index_dir; with `create`, an empty one when there is none yet."""
    from culture_rag.library import Library

    return Library.open(settings, create=create)


def _assistant(settings):
    from culture_rag.assistant import Assistant

    return Assistant(library=_library(settings))


def _print_report(report, as_json: bool) -> None:
    """Per-file rows, then a table of outcomes with their timings (Markdown, so it can go into
    a README as printed), then the state of the index."""
    from culture_rag.ingest.build import FileStatus

    order = [*FileStatus, "encrypted", "corrupt", "no_text", "needs_ocr", "ocr_failed", "empty", "timeout", "crashed", "too_large"]
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
    ray: Annotated[
        Optional[str],
        typer.Option("--ray", metavar="ADDRESS", help="Read and embed on the Ray cluster at ADDRESS (host:port of its head); "
                     "every node needs culture-rag, the model package and the corpus folder at the same path."),
    ] = None,
) -> None:
    """Build or refresh the index: only new or changed papers are embedded."""
    settings = _settings(index, corpus_dir=corpus_dir)
    report = _library(settings, create=True).build(settings.corpus_dir, progress=None if as_json else _progress(), ray=ray)
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
    report = _library(_settings(index), create=True).add(files, password=password, progress=_progress())
    _print_report(report, as_json)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def remove(paper_id: str, index: IndexOpt = None) -> None:
    """Remove a paper from the index (its file moves to the corpus folder's .trash/)."""
    report = _library(_settings(index)).remove(paper_id)
    typer.echo(f"removed {paper_id}; the index holds {report.total_papers} papers, {report.total_chunks} chunks.")


AuthorOpt = Annotated[Optional[str], typer.Option("--author", help="Only papers by this author (words of the name).")]
YearOpt = Annotated[Optional[str], typer.Option("--year", help="Only papers of this year or range: 2019, 2018-2021, 2018-.")]
TitleOpt = Annotated[Optional[str], typer.Option("--title", help="Only papers whose title has these words.")]


def _selected(assistant, author: str | None, year: str | None, title: str | None, ids: list[str] | None = None):
    """The library's papers that pass the filters (catalog.select_papers), within `ids` if given."""
    from culture_rag.index.catalog import select_papers

    listing = [p for p in assistant.papers() if not ids or p.paper_id in ids]
    return select_papers(listing, author=author, year=year, title=title)


def _scope(assistant, paper: list[str] | None, author: str | None, year: str | None, title: str | None):
    """Paper ids to search: --paper ids, narrowed by the filters; None searches everything."""
    if author is None and year is None and title is None:
        return paper or None
    chosen = [p.paper_id for p in _selected(assistant, author, year, title, paper)]
    if not chosen:
        given = ", ".join(f"--{k} {v!r}" for k, v in (("author", author), ("year", year), ("title", title)) if v)
        raise CultureRagError(f"no indexed paper matches {given}; see `culture-rag papers` for what the library holds")
    return chosen


@app.command()
def papers(
    author: AuthorOpt = None, year: YearOpt = None, title: TitleOpt = None, index: IndexOpt = None, as_json: JsonOpt = False
) -> None:
    """List the indexed papers, or those that match --author, --year and --title."""
    listing = _selected(_assistant(_settings(index)), author, year, title)
    if as_json:
        typer.echo(json.dumps([paper_json(p) for p in listing], indent=1, ensure_ascii=False))
        return
    for p in listing:
        pages = f"{p.n_pages} pages" if p.n_pages else p.kind
        published = " · ".join(x for x in (str(p.year or "year unknown"), p.venue, p.doi and f"doi:{p.doi}", p.arxiv_id and f"arXiv:{p.arxiv_id}") if x)
        typer.echo(
            f"{p.paper_id}\n  {p.title}\n  {', '.join(p.authors) or 'authors unknown'} · {published}\n"
            f"  {pages} · {p.n_chunks} chunks · added {p.added_at}"
        )


@app.command()
def search(
    question: str,
    k: Annotated[Optional[int], typer.Option("-k", help="Passages to return.")] = None,
    paper: PaperOpt = None,
    author: AuthorOpt = None,
    year: YearOpt = None,
    title: TitleOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the passages that best match a question."""
    assistant = _assistant(_settings(index))
    hits = assistant.search(question, k, papers=_scope(assistant, paper, author, year, title))
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
    author: AuthorOpt = None,
    year: YearOpt = None,
    title: TitleOpt = None,
    output: Annotated[str, typer.Option("--format", help="text, markdown (answer and reference list) or json.")] = "text",
    bibtex: Annotated[Optional[Path], typer.Option("--bibtex", help="Also write the cited papers' BibTeX to this file.")] = None,
    index: IndexOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Answer a question with cited passages, or say that the papers do not answer it."""
    output = "json" if as_json else output
    if output not in ("text", "markdown", "json"):
        raise CultureRagError(f"--format {output!r}: use text, markdown or json")
    assistant = _assistant(_settings(index, endpoint_url=endpoint))
    answer = assistant.ask(question, mode=mode, k=k, papers=_scope(assistant, paper, author, year, title))
    if bibtex is not None:
        from culture_rag.serve.export import bibtex as bibtex_of, cited_papers

        _write_text(bibtex, bibtex_of(cited_papers([answer])))
    if output == "json":
        typer.echo(json.dumps(answer_json(answer), indent=1, ensure_ascii=False))
        return
    if output == "markdown":
        from culture_rag.serve.export import answer_markdown

        typer.echo(answer_markdown(answer), nl=False)
        return
    typer.echo(answer.text)
    if answer.notice:
        typer.echo(f"\n({answer.notice})")
    for c in answer.citations:
        year = f" ({c.paper.year})" if c.paper.year else ""
        typer.echo(f"\n[{c.n}] {c.paper.title}{year} — {', '.join(c.paper.authors)} — {c.location}\n    “{c.quote}”")
    if not answer.answered:
        typer.echo("\nClosest passages:")
        for h in answer.passages[:3]:
            typer.echo(f"  - {h.paper.title} — {h.chunk.location}: {h.chunk.text[:200].replace(chr(10), ' ')}…")
    for sentence in answer.removed:
        typer.echo(f"\n[removed by the citation check] {sentence}")


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CultureRagError(f"{path}: cannot write it ({exc.strerror or exc}); check the folder and its permissions") from exc


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
    questions: Annotated[Optional[Path], typer.Argument(help="Question set in the JSONL format of FORMAT.md.")] = None,
    mode: ModeOpt = None,
    endpoint: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL (endpoint mode).")] = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    split: Annotated[Optional[str], typer.Option(help="Score a split of the pooled sets instead: train, validation or dev.")] = None,
    split_file: Annotated[Path, typer.Option(help="The committed split.")] = Path("bench/quality/split.json"),
    shared: Annotated[Path, typer.Option(help="The shared/ folder of question sets and documents.")] = Path("../shared"),
    engines: Annotated[str, typer.Option(help="Answerers scored side by side: baseline, fitted.")] = "baseline,fitted",
) -> None:
    """Score a question set: retrieval, answers, citations, abstention and latency. With
    --split, score a split of the pooled sets (bench/quality/split.json), every engine side by
    side on the same indexes, with evidence_in_quote."""
    from culture_rag.evaluate import scoring as evaluation

    if split is not None:
        from culture_rag.evaluate.compare import run_splits, table
        from culture_rag.evaluate.pool import read_split

        results = run_splits(shared, read_split(split_file), split_file.parent / "own_broad.jsonl", [split],
                             engines=tuple(e.strip() for e in engines.split(",") if e.strip()))
        typer.echo(json.dumps(results) if as_json else table(results))
        return
    if questions is None:
        raise CultureRagError("give a question set (JSONL) or --split train|validation|dev")

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


AuthOpt = Annotated[Path, typer.Option("--auth", help="The users file (users.toml) of the server's accounts.")]


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the app on this machine. Any other needs --auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web chat.")] = 7860,
    auth: Annotated[Optional[Path], typer.Option("--auth", help="users.toml: only its users may log in (see `users add`).")] = None,
) -> None:
    """Start the web chat."""
    from culture_rag.serve.webapp.server import launch

    launch(_settings(index), host=host, port=port, auth=auth)


# --- accounts of a shared server ---------------------------------------------------------------

users_app = typer.Typer(no_args_is_help=True, help="The accounts of `serve --auth users.toml` (Argon2id hashes, never passwords).")
app.add_typer(users_app, name="users")


def _read_password() -> str:
    """From a hidden prompt at a terminal, else the first line of stdin: never from argv, where
    other users of the machine could read it in the process list."""
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@users_app.command("add")
def users_add(name: str, auth: AuthOpt) -> None:
    """Add a user, or set an existing user's password (read from a prompt or stdin)."""
    from culture_rag.serve.users import add_user, check_name

    check_name(name, auth)
    replaced = add_user(auth, name, _read_password())
    typer.echo(f"{'updated' if replaced else 'added'} {name} in {auth}; a running server picks it up at the next login.")


@users_app.command("remove")
def users_remove(name: str, auth: AuthOpt) -> None:
    """Remove a user (sessions already open stay open until the server restarts)."""
    from culture_rag.serve.users import remove_user

    remove_user(auth, name)
    typer.echo(f"removed {name} from {auth}.")


@users_app.command("list")
def users_list(auth: AuthOpt) -> None:
    """The user names in a users file."""
    from culture_rag.serve.users import read_users

    for name in sorted(read_users(auth).hashes):
        typer.echo(name)


# --- readers' feedback -------------------------------------------------------------------------


@app.command("feedback")
def feedback_list(
    index: IndexOpt = None,
    as_json: JsonOpt = False,
    as_eval: Annotated[bool, typer.Option("--as-eval", help="Print question lines in the eval FORMAT.md layout.")] = False,
) -> None:
    """List readers' feedback on answers (from the index folder's feedback.jsonl)."""
    from dataclasses import asdict

    from culture_rag.serve.feedback import as_eval_questions, read_feedback

    log = read_feedback(_settings(index).index_dir)
    for problem in log.skipped:
        typer.echo(problem, err=True)
    if as_eval:
        for line in as_eval_questions(log.entries):
            typer.echo(json.dumps(line, ensure_ascii=False))
        return
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in log.entries], indent=1, ensure_ascii=False))
        return
    for e in log.entries:
        who = e.user or "anonymous"
        typer.echo(f"{e.time}  {e.kind}  {who}  (generation {e.generation})\n  Q: {e.question}\n  A: {e.answer[:200]}")
        if e.comment:
            typer.echo(f"  comment: {e.comment}")


# --- the library for other tools (Model Context Protocol) ----------------------------------------


@app.command("mcp")
def mcp_serve(
    index: IndexOpt = None,
    http: Annotated[
        Optional[int], typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio.")
    ] = None,
) -> None:
    """Offer ask, search and papers to an assistant (a desktop chat client) over MCP."""
    from culture_rag.serve.mcp import run

    run(_assistant(_settings(index)), http_port=http)


if __name__ == "__main__":
    main()
