"""The index at 10k, 100k and 1M chunks (synthetic indexes, bench/synthetic.py), each size and
format measured in a fresh process: open time from a cold page cache (every index file evicted
with posix_fadvise) and from a warm one, peak RSS, search and ask p50/p95, and the time to add
one paper against embedding that paper alone. With --baseline, the same measurements of the
code before (a checkout given by path, e.g. `git worktree add ../before <commit>`) run side by
side in the same run, on its own synthetic indexes (its own cache folder)."""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common
import latency
from common import row

TARGETS_1M = {"open warm": 5.0, "open cold": 30.0, "peak RSS": 4096, "search p50": 40, "add / embed": 2.0}  # issue 15


def evict(folder: Path) -> int:
    """Drop every file of `folder` from the page cache; bytes evicted."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total


def generate(size: int, kind: str) -> list[dict]:
    import synthetic

    source = common.real_index(pdfs=True)
    record = synthetic.ensure(common.cache_dir() / f"synthetic-{size}-{kind}", size, kind, source)
    print(f"synthetic {size:,}: {record['papers']:,} papers, written in {record['write_s']} s (cached)", flush=True)
    rows = [row(f"{size:,}", "write (replicate + parts)", record["write_s"], "s")]
    rows += [row(f"{size:,}", f"dense recall{k} vs exact", v, "") for k, v in record.get("recall", {}).items()]
    return rows


def _open(index_dir: Path):
    from culture_rag import Assistant

    start = time.perf_counter()
    assistant = Assistant.load(index_dir)
    return assistant, time.perf_counter() - start


def measure(size: int, args) -> list[dict]:
    label = f"{size:,} {args.label}"
    target = size >= 1_000_000
    cached = common.cache_dir() / f"synthetic-{size}-{args.vectors}"
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        index_dir = Path(tmp) / "index"
        # Files are never modified in place, so hard links copy an index safely for the add.
        shutil.copytree(cached, index_dir, copy_function=os.link)
        evicted = evict(index_dir)
        assistant, cold = _open(index_dir)
        del assistant
        gc.collect()
        assistant, warm = _open(index_dir)
        rss_open = common.peak_rss_mb()
        rows = [
            row(label, "index on disk", round(evicted / 2**30, 2), "GiB"),
            _target(row(label, "open, cold page cache", round(cold, 2), "s"), "open cold", cold, target),
            _target(row(label, "open, warm page cache", round(warm, 2), "s"), "open warm", warm, target),
            row(label, "peak RSS after open", round(rss_open), "MiB"),
        ]
        latency.apply_query_options(assistant, args)
        found = latency.measure(assistant, common.distinct_queries(args.queries), label, SEARCH_TARGET if target else None)
        rows += found
        rows += add_rows(assistant, label, target)
        peak = common.peak_rss_mb()
        rows.append(_target(row(label, "peak RSS", round(peak), "MiB"), "peak RSS", peak, target))
        shutil.rmtree(Path(assistant.corpus_dir), ignore_errors=True)
    return rows


SEARCH_TARGET = TARGETS_1M["search p50"]


def _target(entry: dict, name: str, value: float, applies: bool) -> dict:
    if not applies:
        return entry
    limit = TARGETS_1M[name]
    return {**entry, "target": f"<= {limit}", "met": value <= limit}


def add_rows(assistant, label: str, target: bool) -> list[dict]:
    """Add one paper with the app's steady state (model and parser up), then embed its chunks alone."""
    paper = common.ARAGOG / "distilbert.pdf"
    assistant.warm_up(writes=True)
    try:
        add_s = common.timed(lambda: assistant.add([paper]))
        ids = {p.paper_id for p in assistant.papers() if p.source == paper.name}
        rows = assistant.snapshot.rows()
        texts = [c.embed_text for i in ids for c in assistant.snapshot.chunks[rows[i][1] : rows[i][2]]]
        embed_s = common.timed(lambda: assistant.embedder.embed_texts(texts))
    finally:
        assistant.close()
    ratio = add_s / embed_s
    return [
        row(label, f"add {paper.name} ({len(texts)} chunks)", round(add_s, 2), "s"),
        row(label, "  embed its chunks alone", round(embed_s, 2), "s"),
        _target(row(label, "  add / embed alone", round(ratio, 2), ""), "add / embed", ratio, target),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--sizes", default="10000", help="comma-separated chunk counts, e.g. 10000,100000,1000000")
    parser.add_argument("--vectors", choices=("mixed", "random"), default="mixed")
    parser.add_argument("--queries", type=int, default=60, help="distinct questions per size")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (its src/ and bench/)")
    parser.add_argument("--baseline-cache", type=Path, help="the baseline's cache folder (default: its own, beside ours)")
    parser.add_argument("--milvus", action="store_true",
                        help="add the Milvus store's row (bench/milvus_lite.py on a loopback Milvus Lite server: a stand-in)")
    parser.add_argument("--label", default="this", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("generate", "measure"), help=argparse.SUPPRESS)
    latency.query_options(parser)
    args = parser.parse_args(argv)
    common.quiet()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        rows = generate(sizes[0], args.vectors) if args.child == "generate" else measure(sizes[0], args)
        common.finish(rows, args.json, show=False)
        return
    common.header(f"scale: synthetic indexes ({args.vectors} vectors), queries: {args.backend}")
    options = ["--vectors", args.vectors, "--queries", str(args.queries), "--backend", args.backend]
    options += ["--torch-threads", str(args.torch_threads)]
    rows = []
    for size in sizes:
        if args.baseline:
            env = _baseline_env(args)
            # Its own generator writes its own format; our measurements run on its code.
            rows += common.child(str(args.baseline / "bench" / "scale.py"), "--child", "generate", "--sizes", str(size),
                                 "--vectors", args.vectors, env=env)
            rows += common.child("scale.py", "--child", "measure", "--sizes", str(size), "--label", "before", *options, env=env)
        rows += common.child("scale.py", "--child", "generate", "--sizes", str(size), "--vectors", args.vectors)
        rows += common.child("scale.py", "--child", "measure", "--sizes", str(size), *options)
    if args.milvus:  # Milvus Lite is one Python process: a correctness stand-in, measured on the real papers only
        rows += [{**r, "bench": f"Milvus Lite stand-in: {r['bench']}"} for r in common.child("milvus_lite.py", "--queries", "30", "--rounds", "1")]
    common.finish(rows, args.json)


def _baseline_env(args) -> dict[str, str]:
    cache = args.baseline_cache or Path(common.cache_dir()).parent.with_name("culture-rag-baseline")
    return {**os.environ, "PYTHONPATH": str(args.baseline / "src"), "CULTURE_RAG_CACHE_DIR": str(cache)}


if __name__ == "__main__":
    sys.exit(main())
