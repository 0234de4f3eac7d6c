"""Ray build overhead: `Library.build` of the same files in this process and through a Ray
head on loopback (bench/ray_head.py), alternated run by run into fresh indexes, medians. Each
build starts cold: a new Library (the model loads) here, and on Ray a new connection and a new
actor pool (each actor loads the model). The head starts once, and its start is timed apart.
On one machine Ray adds work and takes the same cores, so this measures its overhead, not a
speed-up."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ray_head import LOOPBACK_ENV, loopback_head

os.environ.update(LOOPBACK_ENV)  # before Ray is imported: its driver reads them at import

import common  # noqa: E402
from common import p50, row  # noqa: E402


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split()
    return " ".join(sorted({f for f in flags if f.startswith("avx")}))


def build(corpus: Path, index: Path, ray: str | None) -> tuple[float, int]:
    from culture_rag import Settings
    from culture_rag.library import Library

    start = time.perf_counter()
    library = Library.open(Settings(index_dir=index, corpus_dir=corpus), create=True)
    report = library.build(corpus, ray=ray)
    seconds = time.perf_counter() - start
    shutil.rmtree(index)
    return seconds, report.embedded_chunks


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="builds of each kind (median)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs the Ray head offers (one actor each)")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("Ray build overhead: in-process vs a loopback Ray head, same files")
    print(f"cpu flags: {cpu_flags()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        corpus = common.copy_corpus(Path(tmp))
        n_files = sum(1 for p in corpus.iterdir() if p.suffix in (".pdf", ".txt", ".md"))
        started = time.perf_counter()
        with loopback_head(num_cpus=args.cpus) as head:
            head_start = time.perf_counter() - started
            here, on_ray, chunks = [], [], set()
            for run in range(args.runs):
                for kind, times in (("here", here), ("ray", on_ray)):
                    seconds, embedded = build(corpus, Path(tmp) / f"index-{kind}-{run}", head.address if kind == "ray" else None)
                    times.append(seconds)
                    chunks.add(embedded)
                    print(f"run {run + 1}: {kind:4s} {seconds:6.1f} s, {embedded} chunks", flush=True)
    assert len(chunks) == 1, f"the builds embedded different numbers of chunks: {chunks}"
    what = f"{n_files} files, {chunks.pop()} chunks"
    rows = [
        row("ray build", f"in-process build ({what}), p50", round(p50(here), 1), "s"),
        row("ray build", f"Ray build, {args.cpus} actors x 1 thread ({what}), p50", round(p50(on_ray), 1), "s"),
        row("ray build", "Ray / in-process", round(p50(on_ray) / p50(here), 2), "x"),
        row("ray build", f"Ray head start ({args.cpus} CPUs, once)", round(head_start, 1), "s"),
    ]
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
