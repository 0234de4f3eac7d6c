"""Incremental cost: Assistant.add of one paper to a large synthetic index, against embedding
that paper's chunks alone, with the add's time split by stage (stages nest: write_generation
includes build_dense, the keyword stages, checksums and fsync)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import common
from common import p50, row

RATIO_TARGET = 2.0


def stages(assistant) -> list[tuple[object, str]]:
    from culture_rag import assistant as module
    from culture_rag import index
    from culture_rag.lexical import KeywordIndex, TermCounts

    return [
        (module, "parse_file"),
        (module, "chunk_paper"),
        (assistant.embedder, "embed_passages"),
        (index.Snapshot, "segments"),
        (index, "build_dense"),
        (TermCounts, "of_texts"),
        (TermCounts, "concat"),
        (KeywordIndex, "from_counts"),
        (KeywordIndex, "save"),
        (index, "_segment_checksums"),
        (index, "_fsync_file"),
        (module, "write_generation"),
        (module, "load_snapshot"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="synthetic index size (chunks)")
    parser.add_argument("--paper", type=Path, default=common.ARAGOG / "distilbert.pdf")
    parser.add_argument("--rounds", type=int, default=3, help="raw-encode rounds (median)")
    args = parser.parse_args(argv)
    common.quiet()
    common.header(f"incremental: add one paper to a {args.size:,}-chunk index")
    common.child("scale.py", "--child", "generate", "--sizes", str(args.size))
    from culture_rag import Assistant

    cached = common.cache_dir() / f"synthetic-{args.size}-mixed"
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        # Segments and generations are never modified in place, so hard links copy them safely.
        shutil.copytree(cached, index_dir, copy_function=os.link)
        assistant = Assistant.load(index_dir)
        assistant.warm_up()
        # Steady state, as in a running app: the passage model is loaded once per process
        # (coldstart.py measures that), and "embed alone" below runs on the loaded model too.
        assistant.embedder.embed_texts(["warm up"])
        totals: dict[str, float] = {}
        with common.stage_timers(stages(assistant), totals):
            add_s = common.timed(lambda: assistant.add([args.paper]))
        added = [c for c in assistant.snapshot.chunks if c.paper_id in {p.paper_id for p in assistant.papers() if p.source == args.paper.name}]
        texts = [c.embed_text for c in added]
        model = assistant.embedder._model
        embed_s = p50([common.timed(lambda: model.encode(texts, batch_size=assistant.settings.embedding_batch_size)) for _ in range(args.rounds)])
        shutil.rmtree(Path(assistant.corpus_dir), ignore_errors=True)  # the copy of the added paper
    ratio = add_s / embed_s
    rows = [
        row("incremental", f"add {args.paper.name} ({len(texts)} chunks) to {args.size:,}", round(add_s, 2), "s"),
        row("incremental", "embed the same chunks alone (raw encode)", round(embed_s, 2), "s"),
        row("incremental", "add / embed alone", round(ratio, 2), "", f"<= {RATIO_TARGET}", ratio <= RATIO_TARGET),
    ]
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        rows.append(row("incremental", f"  stage {name}", round(total, 2), "s", f"{total / add_s:.0%} of add"))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
