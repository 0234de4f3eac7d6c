"""Search latency with torch threads 1 or 2 and FAISS OpenMP threads 1 or 2, one query at a
time (the CLI) and with several Python threads searching at once (the web server), on a
synthetic index where exact search dominates the dense cost."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import common
from common import ms, p50, p95, row


def configure(torch_threads: int, faiss_threads: int) -> None:
    """Both counts are kept per thread: call it in every thread that searches."""
    import torch

    from culture_rag.index.dense import set_search_threads

    torch.set_num_threads(torch_threads)
    set_search_threads(faiss_threads)  # applied by search_dense in the thread that searches


def run(assistant, queries: list[str], workers: int, threads: tuple[int, int]) -> tuple[list[float], float]:
    """Per-request latencies and the wall time for all of them."""
    configure(*threads)
    if workers == 1:
        samples = common.latencies(assistant.search, queries)
        return samples, sum(samples)
    with ThreadPoolExecutor(workers, initializer=configure, initargs=threads) as pool:
        pool.submit(lambda: None).result()  # threads started outside the timing
        wall_start = time.perf_counter()
        samples = list(pool.map(lambda q: common.timed(lambda: assistant.search(q)), queries))
        return samples, time.perf_counter() - wall_start


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="synthetic index size (chunks)")
    parser.add_argument("--queries", type=int, default=8, help="distinct questions per cell and pass")
    parser.add_argument("--passes", type=int, default=3, help="rounds over all cells (load on a shared machine drifts)")
    parser.add_argument("--workers", default="1,4,8", help="concurrent searching threads")
    args = parser.parse_args(argv)
    common.quiet()
    common.header(f"threads: torch x faiss threads, {args.size:,}-chunk synthetic index")
    common.child("scale.py", "--child", "generate", "--sizes", str(args.size))
    from threadpoolctl import threadpool_info

    from culture_rag import Assistant

    assistant = Assistant.load(common.cache_dir() / f"synthetic-{args.size}-mixed")
    blas = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
    print(f"BLAS/OpenMP pools as loaded: {blas}", flush=True)
    cells = list(itertools.product((1, 2), (1, 2), [int(w) for w in args.workers.split(",")]))
    queries = iter(common.distinct_queries(args.queries * args.passes * len(cells) + 30))
    configure(1, 1)
    for _ in range(30):
        assistant.search(next(queries))
    samples = {cell: [] for cell in cells}
    walls = {cell: 0.0 for cell in cells}
    for _ in range(args.passes):  # every cell once per pass, so drifting load hits all alike
        for cell in cells:
            got, wall = run(assistant, [next(queries) for _ in range(args.queries)], cell[2], cell[:2])
            samples[cell] += got
            walls[cell] += wall
    rows = []
    for (torch_n, faiss_n, workers), got in samples.items():
        label = f"torch {torch_n} / faiss {faiss_n} / {workers} searching"
        rows += [
            row(label, "search p50 / p95", f"{ms(p50(got))} / {ms(p95(got))}", "ms"),
            row(label, "throughput", round(len(got) / walls[(torch_n, faiss_n, workers)], 1), "searches/s"),
        ]
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
