"""The Milvus store behind the same API as the local one (issue 15), on a Milvus Lite server
started on loopback (milvus_server.py). Scenarios that read only the public API run on both
stores; end-to-end ones build the shipped corpus and the arXiv PDFs with the real model."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ARAGOG, CORPUS, ROOT, make_settings

from culture_rag import Assistant, IndexModelMismatch, IndexWriteError
from culture_rag.library import Library

pytest.importorskip("pymilvus")
from culture_rag.index.milvus import MilvusStore, _token, keyword_text  # noqa: E402

_names = itertools.count()


def _collection() -> str:
    return f"t{os.getpid()}_{next(_names)}"


def _milvus(uri: str, collection: str, embedder, tmp_path) -> MilvusStore:
    return MilvusStore(uri, collection, embedder.fingerprint, embedder.dimension, lock_dir=tmp_path / "lock")


def _assistant(kind: str, tmp_path, embedder, uri: str | None = None, collection: str | None = None) -> Assistant:
    settings = make_settings(tmp_path)
    if kind == "local":
        return Assistant(settings, embedder)
    store = _milvus(uri, collection or _collection(), embedder, tmp_path)
    return Assistant(library=Library(settings, embedder, store=store))


@pytest.fixture(params=["local", "milvus"])
def built(request, tmp_path, corpus_copy, fake_embedder):
    """The shipped corpus and two arXiv PDFs, built on each store with the fake embedder."""
    for pdf in ("bert.pdf", "distilbert.pdf"):
        shutil.copy(ARAGOG / pdf, corpus_copy / pdf)
    uri = request.getfixturevalue("milvus_uri") if request.param == "milvus" else None
    assistant = _assistant(request.param, tmp_path, fake_embedder, uri)
    assistant.build(corpus_copy)
    return assistant


def _quotes_are_in_their_chunks(answer) -> None:
    assert answer.answered and answer.citations
    for c in answer.citations:
        assert c.quote and c.chunk.text[c.start - c.chunk.start : c.end - c.chunk.start] == c.quote
        assert c.chunk.paper_id == c.paper.paper_id


# --- both stores, the public API ---------------------------------------------------------------


def test_search_and_ask_cite_passages_of_the_index(built):
    hits = built.search("masked language model pre-training", k=5)
    assert len(hits) == 5 and all(h.chunk.paper_id == h.paper.paper_id for h in hits)
    assert len({h.chunk.chunk_id for h in hits}) == 5
    rows = built.snapshot.rows()
    for h in hits:
        _, start, stop = rows[h.paper.paper_id]
        assert h.chunk in built.snapshot.chunks[start:stop] and h.sentence_vectors.shape == (len(h.chunk.sentences), 64)
    _quotes_are_in_their_chunks(built.ask("What is masked language modeling?"))


def test_scoped_search_returns_only_those_papers_with_the_full_k(built):
    shang = next(p.paper_id for p in built.papers() if p.paper_id.startswith("shang"))
    hits = built.search("language model pre-training", k=8, papers=[shang])
    assert len(hits) == 8 and {h.paper.paper_id for h in hits} == {shang}
    both = built.search("model size and speed", k=10, papers=["bert", "distilbert"])
    assert len(both) == 10 and {h.paper.paper_id for h in both} <= {"bert", "distilbert"}
    for flag in ("use_dense", "use_keyword"):
        alone = built._search(built.snapshot, "masked language model pre-training", 6, ["bert"], **{flag: False})
        assert len(alone) == 6 and {h.paper.paper_id for h in alone} == {"bert"}
    answer = built.ask("What is the cultural industry?", papers=["bert"])
    assert answer.passages and {h.paper.paper_id for h in answer.passages} == {"bert"}


def test_add_one_paper_then_remove_it(built, fake_embedder):
    before = built.snapshot
    papers, size = [p.paper_id for p in built.papers()], before.size
    report = built.add([ARAGOG / "hellaswag.pdf"])
    assert report.generation == before.generation + 1 and "hellaswag" in [p.paper_id for p in built.papers()]
    hits = built.search("commonsense sentence completion", k=7, papers=["hellaswag"])
    assert len(hits) == 7 and {h.paper.paper_id for h in hits} == {"hellaswag"}
    assert built.search("commonsense sentence completion", k=3, papers=["bert"])[0].paper.paper_id == "bert"
    built.remove("hellaswag")
    assert [p.paper_id for p in built.papers()] == papers and built.snapshot.size == size
    assert all(h.paper.paper_id != "hellaswag" for h in built.search("commonsense sentence completion adversarial", k=10))
    reopened = Assistant(library=Library(built.settings, fake_embedder, store=built.library.store))
    reopened.reload()
    assert [p.paper_id for p in reopened.papers()] == papers
    assert [h.chunk.chunk_id for h in reopened.search("masked language model", k=5)] == [
        h.chunk.chunk_id for h in built.search("masked language model", k=5)
    ]


def test_a_paper_indexed_twice_shares_its_rows_but_not_its_id(built, tmp_path):
    """Segments are named by content: a copy of a file is one segment under two papers."""
    copy = tmp_path / "bert-copy.pdf"
    shutil.copy(ARAGOG / "bert.pdf", copy)
    built.add([copy])
    twin = next(p for p in built.papers() if p.paper_id not in ("bert",) and p.segment == next(q for q in built.papers() if q.paper_id == "bert").segment)
    hits = built.search("masked language model", k=4, papers=[twin.paper_id])
    assert len(hits) == 4 and {h.paper.paper_id for h in hits} == {twin.paper_id}
    assert {h.chunk.paper_id for h in hits} == {twin.paper_id}


def test_a_model_mismatch_is_refused(built, fake_embedder, milvus_uri, tmp_path):
    class Other(type(fake_embedder)):
        fingerprint = "fake:hash@2"

    store = built.library.store
    if isinstance(store, MilvusStore):
        other = MilvusStore(store.uri, store.collection, Other.fingerprint, fake_embedder.dimension, lock_dir=tmp_path / "lock")
        with pytest.raises(IndexModelMismatch, match=rf"{store.uri}.*{store.collection}.*culture-rag build"):
            other.open()
        wider = MilvusStore(store.uri, store.collection, fake_embedder.fingerprint, 32, lock_dir=tmp_path / "lock")
        with pytest.raises(IndexModelMismatch, match="dimension"):
            wider.open()
    with pytest.raises(IndexModelMismatch, match="culture-rag build"):
        Library(built.settings, Other(), store=_twin(store, Other.fingerprint)).reload()


def _twin(store, fingerprint: str):
    if isinstance(store, MilvusStore):
        return MilvusStore(store.uri, store.collection, fingerprint, store.dimension, lock_dir=store.lock_dir)
    return type(store)(store.index_dir, fingerprint, store.dimension)


# --- Milvus only: generations, keyword statistics, tokens -----------------------------------------


def test_tokens_are_kept_whole_by_any_tokenizer_and_never_collide():
    words = ["cultur", "x1f", "xyz", "café", "中国文化", "a_b", "covid19", "x"]
    tokens = [_token(w) for w in words]
    assert all(t.isascii() and t.isalnum() and t == t.lower() for t in tokens)
    assert len(set(tokens)) == len(words) and _token("cultur") == "cultur"
    assert keyword_text("The Cultural Industries of 中国") == " ".join(_token(w) for w in ["cultur", "industri", "中国"])


@pytest.fixture
def milvus_built(tmp_path, corpus_copy, fake_embedder, milvus_uri):
    assistant = _assistant("milvus", tmp_path, fake_embedder, milvus_uri)
    assistant.build(corpus_copy)
    return assistant


def _live_row_counts(store: MilvusStore) -> tuple[int, int]:
    client = store.client
    chunks = store.chunks_collection(store.dimension)
    total = client.query(chunks, filter="", output_fields=["count(*)"])[0]["count(*)"]
    heads = client.query(store.records, filter="kind == 'head'", output_fields=["generation"])
    return int(total), len(heads)


def test_a_failed_write_leaves_the_previous_generation_live(milvus_built, fake_embedder, monkeypatch):
    store: MilvusStore = milvus_built.library.store
    before = milvus_built.snapshot
    answer = [h.chunk.chunk_id for h in milvus_built.search("cultural industry", k=5)]
    client = store.client
    real_insert, calls = client.insert, []

    def failing(collection, rows, *args, **kwargs):  # the chunk rows go in, then the write dies
        calls.append(collection)
        if collection == store.records and len(calls) > 2:
            raise ConnectionError("lost the server")
        return real_insert(collection, rows, *args, **kwargs)

    monkeypatch.setattr(client, "insert", failing)
    with pytest.raises(IndexWriteError, match="previous index is still served"):
        milvus_built.add([ARAGOG / "hellaswag.pdf"])
    monkeypatch.setattr(client, "insert", real_insert)
    assert store.is_live(before) and store.snapshot(None).generation == before.generation
    orphans = client.query(store.chunks_collection(store.dimension), filter=f"born > {before.generation}", output_fields=["count(*)"])
    assert orphans[0]["count(*)"] > 0  # the failed write's rows are there, and invisible:
    reader = Assistant(library=Library(milvus_built.settings, fake_embedder, store=store))
    reader.reload()
    assert "hellaswag" not in [p.paper_id for p in reader.papers()]
    assert [h.chunk.chunk_id for h in reader.search("cultural industry", k=5)] == answer
    assert all(h.paper.paper_id != "hellaswag" for h in reader.search("commonsense sentence completion swag", k=10))
    assert reader.snapshot.keyword.idf(["swag"])["swag"] == reader.snapshot.keyword.idf(["zzqqxx"])["zzqqxx"]
    milvus_built.add([ARAGOG / "hellaswag.pdf"])  # the next write collects them and commits its own
    assert _live_row_counts(store) == (milvus_built.snapshot.size, 1)


KILLED_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from fakes import HashEmbedder
    from conftest import make_settings
    from pathlib import Path
    from culture_rag.library import Library
    from culture_rag.index.milvus import MilvusStore
    embedder = HashEmbedder()
    store = MilvusStore({uri!r}, {collection!r}, embedder.fingerprint, embedder.dimension, lock_dir={lock!r})
    client, real, calls = store.client, store.client.insert, []
    def insert(collection, rows, *a, **k):
        calls.append(collection)
        if collection == store.records and len(calls) > 2:
            os.kill(os.getpid(), signal.SIGKILL)  # after the chunk rows, before the commit
        return real(collection, rows, *a, **k)
    client.insert = insert
    library = Library(make_settings(Path({tmp!r})), embedder, store=store)
    library.refresh()
    library.add([{pdf!r}])
    """
)


def test_a_killed_write_leaves_the_previous_generation_live(milvus_built, fake_embedder, tmp_path):
    store: MilvusStore = milvus_built.library.store
    before = milvus_built.snapshot
    script = KILLED_WRITE.format(
        tests=str(ROOT / "tests"), uri=store.uri, collection=store.collection, lock=str(store.lock_dir),
        tmp=str(tmp_path), pdf=str(ARAGOG / "hellaswag.pdf"),
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=300, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert store.is_live(before)
    reader = Library(milvus_built.settings, fake_embedder, store=store)
    reader.reload()
    assert reader.snapshot.generation == before.generation and "hellaswag" not in [p.paper_id for p in reader.papers()]
    assert _live_row_counts(store)[0] > before.size  # its rows are in the collection, invisible
    report = milvus_built.add([ARAGOG / "hellaswag.pdf"])
    assert report.generation == before.generation + 1 and _live_row_counts(store) == (milvus_built.snapshot.size, 1)


def test_keyword_statistics_match_the_local_index(milvus_built, tmp_path, corpus_copy, fake_embedder):
    local = Assistant(make_settings(tmp_path / "local"), fake_embedder)
    local.build(corpus_copy)
    words = ["cultur", "belarus", "export", "film", "zzqqxx"]
    assert milvus_built.snapshot.keyword.idf(words) == pytest.approx(local.snapshot.keyword.idf(words))
    rows = milvus_built.snapshot.rows()
    mao = next(p for p in rows if p.startswith("mao"))
    scope = [rows[mao][1:]]
    assert milvus_built.snapshot.keyword.used_within(words, scope) == local.snapshot.keyword.used_within(words, [local.snapshot.rows()[mao][1:]])
    # BM25 ranks as the local index does (same stems, same k1 and b)
    query = "cultural industry export of film in Belarus"
    assert list(milvus_built.snapshot.keyword.search(query, 10).rows) == list(local.snapshot.keyword.search(query, 10).rows)
    row = rows[mao][1] + 3
    assert milvus_built.snapshot.chunks[row] == local.snapshot.chunks[row]
    assert np.allclose(milvus_built.snapshot.chunk_vector(row), local.snapshot.chunk_vector(row))
    assert np.allclose(milvus_built.snapshot.sentence_matrix(row), local.snapshot.sentence_matrix(row))
    chunk_id = local.snapshot.chunks[row].chunk_id
    assert milvus_built.snapshot.chunk_row(chunk_id) == row and milvus_built.snapshot.chunk_row("0" * 20) is None


def test_settings_pick_the_milvus_store(tmp_path, fake_embedder, milvus_uri, corpus_copy):
    settings = make_settings(
        tmp_path, store="milvus", milvus_uri=milvus_uri, milvus_collection=_collection(), cache_dir=tmp_path / "cache",
        milvus_shards=2, milvus_replicas=2,
    )
    assistant = Assistant(settings, fake_embedder)
    store = assistant.library.store
    assert isinstance(store, MilvusStore) and (store.shards, store.replicas) == (2, 2)
    assistant.build(corpus_copy)
    assert not (tmp_path / "index").exists() and assistant.snapshot.size > 0
    loaded = Assistant.load(settings=settings, embedder=fake_embedder)
    assert [p.paper_id for p in loaded.papers()] == [p.paper_id for p in assistant.papers()]


# --- Milvus, real model: the shipped corpus and the arXiv PDFs ------------------------------------


@pytest.fixture(scope="session")
def milvus_real_assistant(tmp_path_factory, milvus_uri, real_corpus_assistant):
    tmp = tmp_path_factory.mktemp("milvus-real")
    shutil.copytree(CORPUS, tmp / "corpus")
    for pdf in ARAGOG.glob("*.pdf"):
        shutil.copy(pdf, tmp / "corpus" / pdf.name)
    embedder = real_corpus_assistant.embedder  # one model load for the session
    assistant = _assistant("milvus", tmp, embedder, milvus_uri, collection=f"real{os.getpid()}")
    assistant.build(tmp / "corpus")
    return assistant


def test_real_model_search_and_ask_on_milvus(milvus_real_assistant, real_corpus_assistant):
    assistant = milvus_real_assistant
    assert {p.paper_id for p in real_corpus_assistant.papers()} < {p.paper_id for p in assistant.papers()}
    question = "What is the material carrier of culture?"
    _quotes_are_in_their_chunks(assistant.ask(question))
    assert "material carrier of culture" in assistant.ask(question).citations[0].quote
    _quotes_are_in_their_chunks(assistant.ask("What does BERT's masked language model objective do?"))
    shang = next(p.paper_id for p in assistant.papers() if p.paper_id.startswith("shang"))
    hits = assistant.search("paths for the cultural industry to go international", k=8, papers=[shang])
    assert len(hits) == 8 and {h.paper.paper_id for h in hits} == {shang}
    declined = assistant.ask("What is the boiling point of liquid nitrogen on Jupiter's moons?")
    assert not declined.answered


def test_real_model_source_view_of_a_pdf_citation_on_milvus(milvus_real_assistant):
    answer = milvus_real_assistant.ask("How many parameters does DistilBERT have compared with BERT?")
    cited = next(c for c in answer.citations if c.paper.source.endswith(".pdf"))
    try:
        view = milvus_real_assistant.source_view(cited)
        assert view.cited_page == cited.page and view.boxes and view.png and view.exact
        by_id = milvus_real_assistant.source_view(cited.chunk.chunk_id, image=False)
        assert by_id.page is not None and by_id.chunk_id == cited.chunk.chunk_id
    finally:
        milvus_real_assistant.close()  # its page renderer is a process; later tests count the children


def test_milvus_retrieves_what_the_local_store_retrieves(tmp_path, corpus_copy, fake_embedder, milvus_uri):
    """Same stems, same BM25 parameters, same vectors, RRF with the same constant: the same
    passages, best first (the local store fuses in Python, Milvus on its side)."""
    for pdf in ("bert.pdf", "distilbert.pdf"):
        shutil.copy(ARAGOG / pdf, corpus_copy / pdf)
    local = _assistant("local", tmp_path / "local", fake_embedder)
    milvus = _assistant("milvus", tmp_path / "milvus", fake_embedder, milvus_uri)
    for assistant in (local, milvus):
        assistant.build(corpus_copy)
    for question in ("cultural industry export of film in Belarus", "masked language model pre-training",
                     "distillation of a smaller model", "international development paths"):
        ours = [(h.chunk.chunk_id, h.paper.paper_id) for h in local.search(question, k=8)]
        theirs = [(h.chunk.chunk_id, h.paper.paper_id) for h in milvus.search(question, k=8)]
        assert theirs == ours, question
        assert milvus.ask(question).text == local.ask(question).text


def test_a_uri_where_no_server_listens_is_named_at_once(fake_embedder, tmp_path):
    """Nothing listens on a fresh port: the store says so, naming the server, from the refused TCP
    connection (not after the minute a slow server's first answer gets)."""
    from conftest import free_port

    from culture_rag import IndexLoadError

    store = _milvus(f"http://127.0.0.1:{free_port()}", _collection(), fake_embedder, tmp_path)
    with pytest.raises(IndexLoadError, match=r"milvus http://127\.0\.0\.1:\d+ .*cannot connect \(Connection refused\).*start Milvus"):
        store.open()
