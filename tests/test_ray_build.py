"""`culture-rag build --ray`: papers read and embedded on a Ray cluster (a head this test starts
on loopback) give the index an in-process build gives, vectors included, and the same outcome
for files that cannot be read; a second build embeds nothing. Every process the head started
is stopped by its id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import ARAGOG, CORPUS, ROOT, free_port

pytest.importorskip("ray")
sys.path.insert(0, str(ROOT / "bench"))

from ray_head import LOOPBACK_ENV, loopback_head, session_processes  # noqa: E402

PDFS = ("distilbert.pdf", "codenet.pdf")
BAD = {"broken.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nnot a pdf at all\n", "empty.txt": b""}


@pytest.fixture(scope="module")
def head():
    with loopback_head(num_cpus=2) as started:
        yield started
        assert any("raylet" in name for name in session_processes(started.session).values())
    assert session_processes(started.session) == {}, "the head's processes must all be stopped"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray") / "corpus"
    shutil.copytree(CORPUS, folder)
    for name in PDFS:
        shutil.copy(ARAGOG / name, folder / name)
    for name, data in BAD.items():
        (folder / name).write_bytes(data)
    return folder


def build_on_ray(corpus, index, address, env: dict[str, str] | None = None) -> dict:
    """The CLI in a process of its own: Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import."""
    done = subprocess.run(
        [sys.executable, "-m", "culture_rag.serve.cli", "build", str(corpus), "--index", str(index), "--ray", address, "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **LOOPBACK_ENV, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def outcomes(report: list[dict]) -> dict[str, tuple]:
    return {o["source"]: (o["status"], o["detail"], o["n_chunks"]) for o in report}


@pytest.fixture(scope="module")
def ray_build(head, corpus, tmp_path_factory):
    """The index built through the Ray head, and the build's report."""
    index = tmp_path_factory.mktemp("ray-index")
    return index, build_on_ray(corpus, index, head.address)


def library(index, corpus, create=False):
    from culture_rag import Settings
    from culture_rag.library import Library

    return Library.open(Settings(index_dir=index, corpus_dir=corpus), create=create)


@pytest.mark.slow
def test_a_ray_build_gives_the_index_an_in_process_build_gives(ray_build, corpus, tmp_path):
    from culture_rag.serve.serialize import report_json

    ray_index, ray_report = ray_build
    here = library(tmp_path / "index", corpus, create=True)
    here_report = report_json(here.build(corpus))

    assert outcomes(ray_report["outcomes"]) == outcomes(here_report["outcomes"])
    statuses = {o["source"]: o["status"] for o in ray_report["outcomes"]}
    assert statuses.pop("broken.pdf") == "corrupt" and statuses.pop("empty.txt") == "empty"
    assert set(statuses.values()) == {"indexed"} and len(statuses) == 2 + len(PDFS)
    a, b = here.snapshot, library(ray_index, corpus).snapshot
    assert [replace(p, added_at="") for p in a.papers] == [replace(p, added_at="") for p in b.papers]
    assert list(a.chunks) == list(b.chunks) and a.size > 200
    # Exactly equal: the int8 graph encodes one text at a time, so neither batches nor the
    # actor's one thread (against two here) change a bit of it.
    for row in range(a.size):
        assert np.array_equal(a.chunk_vector(row), b.chunk_vector(row)), row
        assert np.array_equal(a.sentence_matrix(row), b.sentence_matrix(row)), row


@pytest.mark.slow
def test_a_ray_build_writes_into_milvus_what_it_writes_locally(ray_build, corpus, head, milvus_uri, tmp_path):
    """The store is the driver's: the same Ray build into a Milvus collection (the Lite server on
    loopback) holds the local build's papers, chunks and vectors."""
    from culture_rag import Settings
    from culture_rag.library import Library

    env = {"CULTURE_RAG_STORE": "milvus", "CULTURE_RAG_MILVUS_URI": milvus_uri, "CULTURE_RAG_MILVUS_COLLECTION": "ray_build"}
    report = build_on_ray(corpus, tmp_path / "unused-index", head.address, env)
    assert report["embedded_chunks"] == report["total_chunks"] > 200
    local = library(ray_build[0], corpus).snapshot
    settings = Settings(index_dir=tmp_path / "unused-index", corpus_dir=corpus, store="milvus", milvus_uri=milvus_uri,
                        milvus_collection="ray_build")
    remote = Library.open(settings).snapshot
    assert [replace(p, added_at="") for p in remote.papers] == [replace(p, added_at="") for p in local.papers]
    assert list(remote.chunks) == list(local.chunks)
    for row in range(local.size):
        assert np.allclose(remote.chunk_vector(row), local.chunk_vector(row), atol=1e-6), row
        assert np.array_equal(remote.sentence_matrix(row), local.sentence_matrix(row)), row
    assert not (tmp_path / "unused-index").exists() or not any((tmp_path / "unused-index").glob("gen-*"))


@pytest.mark.slow
def test_a_second_ray_build_embeds_nothing_new(ray_build, corpus, head):
    index, first = ray_build
    again = build_on_ray(corpus, index, head.address)
    assert first["embedded_chunks"] == first["total_chunks"] > 0
    assert again["embedded_chunks"] == 0 and again["generation"] == first["generation"]
    statuses = {o["source"]: o["status"] for o in again["outcomes"]}
    assert statuses.pop("broken.pdf") == "corrupt" and statuses.pop("empty.txt") == "empty"
    assert set(statuses.values()) == {"unchanged"}


def test_an_address_where_no_head_listens_fails_at_once_and_leaves_the_index(corpus_copy, fake_embedder, tmp_path):
    from culture_rag import Settings
    from culture_rag.errors import ClusterError
    from culture_rag.library import Library

    library = Library.open(Settings(index_dir=tmp_path / "index", corpus_dir=corpus_copy), fake_embedder, create=True)
    first = library.build(corpus_copy)
    (corpus_copy / "new.txt").write_text("A new paper on film exports along the Silk Road. " * 20)
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"no Ray head answers at {address}.*ray start --head"):
        library.build(corpus_copy, ray=address)
    assert library.store.open().generation == first.generation


def test_a_paper_crosses_arrow_whole_and_a_failed_one_as_its_outcome(corpus, fake_embedder, tmp_path):
    """What an actor sends back (distributed.paper_row, through an Arrow table) gives the driver
    the paper, chunks, term counts, outcome and float32 vectors it read, bit for bit."""
    import pyarrow as pa

    from culture_rag import Settings
    from culture_rag.errors import ModelError
    from culture_rag.ingest.build import PdfParser
    from culture_rag.ingest.distributed import paper_row, read_paper, row_schema
    from culture_rag.ingest.pipeline import PaperReader

    settings = Settings(index_dir=tmp_path / "index", corpus_dir=corpus)
    reader = PaperReader(settings, fake_embedder)
    with PdfParser(settings.parse_timeout_s, settings.parse_memory_mb) as parser:
        reads = [reader.embed(reader.read(parser, corpus / name, None, None)) for name in ("distilbert.pdf", "broken.pdf")]
    table = pa.Table.from_pylist([paper_row(r, fake_embedder) for r in reads], schema=row_schema())
    sent, failed = (read_paper(row, fake_embedder.fingerprint) for row in table.to_pylist())
    read = reads[0]
    assert sent.paper == read.paper and sent.paper.line_anchors and sent.chunks == read.chunks
    assert sent.outcome == read.outcome and failed.outcome == reads[1].outcome and failed.paper is None
    assert np.array_equal(sent.vectors.chunks, read.vectors.chunks) and sent.vectors.chunks.dtype == np.float32
    assert np.array_equal(sent.vectors.sentences, read.vectors.sentences)
    assert sent.terms.vocab == read.terms.vocab and (sent.terms.matrix != read.terms.matrix).nnz == 0
    with pytest.raises(ModelError, match="install the same model package"):
        read_paper(table.to_pylist()[0], "another-model@0")
