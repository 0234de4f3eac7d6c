"""Incremental cost: Assistant.add of one paper to a large synthetic index, against embedding
that paper's chunks alone, with the add's time split by stage (stages nest: write_generation
includes the segment, plan, manifest and clean-up stages)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import common
from common import p50, row

RATIO_TARGET = 2.0


def stages(assistant) -> list[tuple[object, str]]:
    from culture_rag import files
    from culture_rag.ingest import pipeline as module  # the per-paper step: parse_file and chunk_paper as it calls them
    from culture_rag.index import reading, store, writing
    from culture_rag.index.lexical import Postings, TermCounts

    return [
        (module, "parse_file"),
        (module, "chunk_paper"),
        (assistant.embedder, "embed_passages"),
        (writing._Plan, "of"),
        (reading, "segment_part"),
        (Postings, "of_counts"),
        (TermCounts, "of_texts"),
        (writing, "_merge"),
        (writing, "_write_segment"),
        (writing, "_segment_checksums"),
        (writing, "_write_manifest"),
        (writing, "_opened"),
        (writing, "_collect_garbage"),
        (files, "fsync_file"),
        (store, "write_generation"),
        (store, "load_snapshot"),
    ]


def add_once(cached: Path, paper: Path, totals: dict[str, float]) -> tuple[float, float, int]:
    """(add seconds, embed-alone seconds, chunks) for one add to a fresh copy of the index."""
    from culture_rag import Assistant

    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        # Segments and generations are never modified in place, so hard links copy them safely.
        shutil.copytree(cached, index_dir, copy_function=os.link)
        assistant = Assistant.load(index_dir)
        # Steady state, as in the running app: the passage model and the PDF parser are up
        # (coldstart.py measures start-up), and "embed alone" below runs on the loaded model too.
        assistant.warm_up(writes=True)
        try:
            with common.stage_timers(stages(assistant), totals):
                add_s = common.timed(lambda: assistant.add([paper]))
            ids = {p.paper_id for p in assistant.papers() if p.source == paper.name}
            texts = [c.embed_text for c in assistant.snapshot.chunks if c.paper_id in ids]
            embed_s = common.timed(lambda: assistant.embedder.embed_texts(texts))
        finally:
            assistant.close()
            shutil.rmtree(Path(assistant.corpus_dir), ignore_errors=True)  # the copy of the added paper
    return add_s, embed_s, len(texts)


def add_to_empty(paper: Path) -> float:
    """Seconds to add the same paper to an empty index, app warm: the paper's own cost."""
    from culture_rag import Assistant

    with tempfile.TemporaryDirectory() as tmp:
        assistant = Assistant(common.settings(Path(tmp) / "index", Path(tmp) / "corpus"))
        assistant.warm_up(writes=True)
        try:
            return common.timed(lambda: assistant.add([paper]))
        finally:
            assistant.close()


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="synthetic index size (chunks)")
    parser.add_argument(
        "--papers", type=Path, nargs="+", default=[common.ARAGOG / "distilbert.pdf", common.ARAGOG / "hellaswag.pdf"],
        help="papers to add, each to a fresh copy (default: the smallest aragog PDF and the median-sized one)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="adds per paper (median)")
    args = parser.parse_args(argv)
    common.quiet()
    common.header(f"incremental: add one paper to a {args.size:,}-chunk index")
    common.child("scale.py", "--child", "generate", "--sizes", str(args.size))
    cached = common.cache_dir() / f"synthetic-{args.size}-mixed"
    rows, totals, total_add = [], {}, 0.0
    for paper in args.papers:
        runs = [add_once(cached, paper, totals) for _ in range(args.rounds)]
        add_s, embed_s, n = p50([r[0] for r in runs]), p50([r[1] for r in runs]), runs[0][2]
        total_add += sum(r[0] for r in runs)
        ratio = p50([r[0] / r[1] for r in runs])
        alone = p50([add_to_empty(paper) for _ in range(args.rounds)])
        rows += [
            row("incremental", f"add {paper.name} ({n} chunks) to {args.size:,}", round(add_s, 2), "s"),
            row("incremental", "  embed the same chunks alone", round(embed_s, 2), "s"),
            row("incremental", "  add / embed alone (median of rounds)", round(ratio, 2), "", f"<= {RATIO_TARGET}", ratio <= RATIO_TARGET),
            row("incremental", "  add the same paper to an empty index", round(alone, 2), "s"),
            row("incremental", f"  add to {args.size:,} / add to empty", round(add_s / alone, 2), "", "what the index size adds"),
        ]
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        rows.append(row("incremental", f"  stage {name}", round(total / total_add * 100), "%", "of all adds"))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
