"""Search and ask latency, load time and peak RSS on synthetic indexes of growing size
(bench/synthetic.py), each size measured in its own process; for approximate dense indexes,
recall of the dense top-10 and top-50 against exact search on real question vectors."""

from __future__ import annotations

import argparse
import time

import common
import latency
import numpy as np
from common import row

SEARCH_P50_MS_1M = 40  # issue 6 target at 1M chunks


def dense_recall(assistant, queries: list[str]) -> tuple[float, float]:
    """Overlap of the production dense top-k (retrieval._dense) with exact inner-product search."""
    import faiss

    from culture_rag import retrieval

    snapshot = assistant.snapshot
    index = faiss.downcast_index(snapshot.dense)
    exact = faiss.downcast_index(index.storage) if hasattr(index, "storage") else index
    vectors = assistant.embedder.embed_texts(queries)
    n = assistant.settings.candidates
    _, truth = exact.search(vectors, n)
    got = [retrieval._dense(snapshot, v, n)[0] for v in vectors]

    def at(k: int) -> float:
        return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth)]))

    return at(10), at(n)


def generate(size: int, kind: str) -> list[dict]:
    import synthetic

    source = common.real_index(pdfs=True)
    record = synthetic.ensure(common.cache_dir() / f"synthetic-{size}-{kind}", size, kind, source)
    print(f"synthetic {size:,}: {record['papers']:,} papers, written in {record['write_s']} s (cached)", flush=True)
    return [row(f"{size:,}", "write (replicate + dense + BM25)", record["write_s"], "s")]


def measure(size: int, args) -> list[dict]:
    from culture_rag import Assistant

    label = f"{size:,}"
    start = time.perf_counter()
    assistant = Assistant.load(common.cache_dir() / f"synthetic-{size}-{args.vectors}")
    load_s = time.perf_counter() - start
    rss_loaded = common.peak_rss_mb()
    latency.apply_query_options(assistant, args)
    dense = type(assistant.snapshot.dense).__name__
    target = SEARCH_P50_MS_1M if size >= 1_000_000 else None
    rows = [row(label, f"load ({dense})", round(load_s, 1), "s")]
    rows += latency.measure(assistant, common.distinct_queries(args.queries), label, target)
    if dense != "IndexFlatIP":
        real = [q["question"] for name in ("dev_seed", "dev_aragog") for q in common.eval_questions(name)]
        at10, at_n = dense_recall(assistant, real)
        rows += [row(label, "dense recall@10 vs exact", round(at10, 3), ""), row(label, "dense recall@50 vs exact", round(at_n, 3), "")]
    rows += [
        row(label, "RSS after load", round(rss_loaded), "MiB"),
        row(label, "peak RSS", round(common.peak_rss_mb()), "MiB", "< 24 GiB with room", common.peak_rss_mb() < 16 * 1024),
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--sizes", default="10000", help="comma-separated chunk counts, e.g. 10000,100000,1000000")
    parser.add_argument("--vectors", choices=("mixed", "random"), default="mixed")
    parser.add_argument("--queries", type=int, default=60, help="distinct questions per size")
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
        rows += common.child("scale.py", "--child", "generate", "--sizes", str(size), "--vectors", args.vectors)
        rows += common.child("scale.py", "--child", "measure", "--sizes", str(size), *options)
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
