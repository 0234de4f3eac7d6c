"""The Milvus store on a Milvus Lite server (loopback), side by side with the local store in one
run, on the shipped corpus plus the five arXiv PDFs: build, search and ask p50/p95, and adding
one paper (removed, then added back) against embedding its chunks alone. Milvus Lite is a
single-process Python server: a correctness stand-in for Milvus Standalone or Distributed, not
a benchmark of them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import latency
from common import p50, row


@contextlib.contextmanager
def milvus_lite(data: Path):
    """A Milvus Lite server on 127.0.0.1, stopped by its process group's id."""
    from pymilvus import MilvusClient

    from culture_rag.index.milvus import GRPC_OPTIONS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("milvus-lite")), "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                MilvusClient(uri=uri, timeout=2, grpc_options=GRPC_OPTIONS).list_collections()  # shared by later clients
                break
            except Exception:  # noqa: BLE001  not up yet
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Milvus Lite did not start") from None
                time.sleep(0.2)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def add_one(assistant, paper: Path, rounds: int) -> list[dict]:
    """Remove `paper`, add it back (app warm), `rounds` times; the add against embedding its chunks."""
    label = assistant.library.store.__class__.__name__
    source = next(p for p in assistant.papers() if p.source == paper.name)
    texts = [c.embed_text for c in assistant.snapshot.chunks if c.paper_id == source.paper_id]
    adds, embeds = [], []
    for _ in range(rounds):
        assistant.remove(source.paper_id)
        adds.append(common.timed(lambda: assistant.add([paper])))
        embeds.append(common.timed(lambda: assistant.embedder.embed_texts(texts)))
        source = next(p for p in assistant.papers() if p.source == paper.name)
    return [
        row(label, f"add {paper.name} ({len(texts)} chunks) p50", round(p50(adds), 2), "s"),
        row(label, "  its embedding alone p50", round(p50(embeds), 2), "s"),
        row(label, "  add / embedding", round(p50([a / e for a, e in zip(adds, embeds)]), 2), "x"),
    ]


def main(argv: list[str] | None = None) -> None:
    from culture_rag import Assistant
    from culture_rag.index.milvus import MilvusStore
    from culture_rag.library import Library

    parser = common.args_parser(__doc__)
    parser.add_argument("--queries", type=int, default=90, help="distinct questions (a third each: search, parts, ask)")
    parser.add_argument("--rounds", type=int, default=3, help="adds of the paper per store (median)")
    parser.add_argument("--paper", default="distilbert.pdf", help="the aragog PDF removed and added back")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("Milvus store on Milvus Lite (a stand-in) beside the local store")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, milvus_lite(Path(tmp) / "milvus") as uri:
        tmp = Path(tmp)
        embedder = None
        stores = {}
        for kind in ("local", "milvus"):
            corpus = common.copy_corpus(tmp / kind, pdfs=True)
            settings = common.settings(tmp / kind / "index", corpus)
            if kind == "local":
                assistant = Assistant(settings, embedder)
            else:
                store = MilvusStore(uri, "bench", embedder.fingerprint, embedder.dimension, lock_dir=tmp / "lock")
                assistant = Assistant(library=Library(settings, embedder, store=store))
            embedder = assistant.embedder  # one model for both
            assistant.warm_up(writes=True)
            build_s = common.timed(lambda: assistant.build(corpus))
            label = type(assistant.library.store).__name__
            rows.append(row(label, f"build ({assistant.snapshot.size} chunks, {len(assistant.papers())} papers)", round(build_s, 1), "s"))
            stores[kind] = (assistant, corpus)
        queries = common.distinct_queries(args.queries)
        for kind, (assistant, corpus) in stores.items():
            label = type(assistant.library.store).__name__
            rows += latency.measure(assistant, queries, label)
            rows += add_one(assistant, common.ARAGOG / args.paper, args.rounds)
            assistant.close()
    rows.append(row("machine", common.machine(), "", ""))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
