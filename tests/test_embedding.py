"""The packaged model: offline, hash-checked, and the ONNX query path equal to torch."""

from __future__ import annotations

import numpy as np
import pytest

from culture_rag import ModelError, Settings
from culture_rag.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.slow


def test_onnx_query_vectors_equal_torch(tmp_path):
    onnx = SentenceTransformerEmbedder(Settings(cache_dir=tmp_path))
    torch = SentenceTransformerEmbedder(Settings(cache_dir=tmp_path, query_backend="torch"))
    for text in ("What strengths does Belarus have?", "export value of Chinese media in 2020", "word " * 400):
        a, b = onnx.embed_query(text), torch.embed_query(text)
        assert a.shape == (384,) and abs(float(np.linalg.norm(a)) - 1) < 1e-4
        assert float(a @ b) > 0.9999
    assert onnx._onnx_query is not None  # the ONNX path really ran
    assert list((tmp_path / "onnx").glob("*/query-fp32.onnx"))  # exported once into the cache


def test_wrong_weights_hash_is_refused():
    with pytest.raises(ModelError, match="sha256"):
        SentenceTransformerEmbedder(Settings(embedding_sha256="0" * 64))


def test_chunk_and_sentence_vectors_come_from_one_pass():
    embedder = SentenceTransformerEmbedder(Settings(query_backend="torch", passage_backend="torch"))
    text = "Belarus has a strong heritage in crafts. China exports films to Africa."
    vectors = embedder.embed_passages([text], [[(0, 40), (41, len(text))]])
    assert vectors.chunks.shape == (1, 384) and vectors.sentences.shape == (2, 384)
    whole = embedder.embed_query(text)
    assert float(vectors.chunks[0] @ whole) > 0.9999
    crafts = embedder.embed_query("crafts heritage")
    assert float(vectors.sentences[0] @ crafts) > float(vectors.sentences[1] @ crafts)


# --- int8 ONNX passages ---------------------------------------------------------------------

INT8_SCRIPT = """
import sys
from pathlib import Path
from culture_rag import Settings
from culture_rag.embedding import SentenceTransformerEmbedder
embedder = SentenceTransformerEmbedder(Settings(cache_dir=Path(sys.argv[1]), passage_backend="onnx-int8"))
text = "Belarus has a strong heritage in crafts. China exports films to Africa."
vectors = embedder.embed_passages([text], [[(0, 40), (41, len(text))]])
assert vectors.sentences.shape == (2, 384) and embedder.count([text]) == [14] and embedder.windows(text, 5)
print(sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules))
"""


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    """One cache with the int8 passage graph exported, shared by the tests below (~10 s)."""
    cache = tmp_path_factory.mktemp("cache")
    SentenceTransformerEmbedder(Settings(cache_dir=cache, passage_backend="onnx-int8")).embed_texts(["warm up"])
    return cache


def corpus_chunks(embedder) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """The real chunks of corpus/ (as indexing cuts them): embed texts and sentence spans."""
    from conftest import CORPUS

    from culture_rag.chunking import chunk_paper, sentence_spans_in_embed_text
    from culture_rag.papers import Paper, Region

    texts, spans = [], []
    for path in sorted(CORPUS.glob("*.[mt][dx]*")):
        text = path.read_text()
        paper = Paper(path.stem, path.name, path.stem, (), path.suffix[1:], text, (Region(0, len(text), page=1),), "hash")
        for chunk in chunk_paper(paper, embedder, 200, 40, embedder.max_tokens):
            texts.append(chunk.embed_text)
            spans.append(sentence_spans_in_embed_text(chunk))
    return texts, spans


def test_int8_passage_vectors_are_close_to_torch(int8_cache):
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8", embedding_batch_size=8))
    torch = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="torch", embedding_batch_size=8))
    texts, spans = corpus_chunks(torch)
    assert len(texts) > 40 and corpus_chunks(int8) == (texts, spans)  # the same pieces, so the same chunks
    a, b = int8.embed_passages(texts, spans), torch.embed_passages(texts, spans)
    assert a.chunks.shape == b.chunks.shape and a.sentences.shape == b.sentences.shape == (sum(map(len, spans)), 384)
    assert float((a.chunks * b.chunks).sum(1).min()) >= 0.98
    assert float((a.sentences * b.sentences).sum(1).min()) >= 0.98
    assert np.allclose(np.linalg.norm(a.sentences, axis=1), 1, atol=1e-4)
    # free texts (table rows, citation checks) come from the same graph as the passages
    assert float((int8.embed_texts(texts[:10]) * b.chunks[:10]).sum(1).min()) >= 0.98


def test_int8_vectors_do_not_depend_on_the_other_texts(int8_cache):
    """int8 activation scales are set per run, so texts run one at a time: a paper added later
    gets exactly the vectors a full rebuild would give it."""
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    short = "Belarus has a strong heritage in crafts."
    alone = int8.embed_texts([short])[0]
    among = int8.embed_texts(["China exports films and television series to Africa. " * 20, short])[1]
    assert np.array_equal(alone, among)


def test_passage_backend_changes_the_fingerprint(int8_cache):
    torch = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="torch"))
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    assert torch.fingerprint != int8.fingerprint and int8.fingerprint.startswith(torch.fingerprint)


def test_int8_export_is_cached_and_loading_needs_no_torch(int8_cache, monkeypatch):
    import subprocess
    import sys

    graph = next((int8_cache / "onnx").glob("*/passage-int8.onnx"))
    before = graph.stat()
    assert not [p.name for p in graph.parent.iterdir() if p.name.startswith(("raw-", "tmp-"))]  # no leftovers

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr("culture_rag.embedding._trace", no_export)
    again = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    assert again.embed_texts(["Belarus crafts"]).shape == (1, 384)
    after = graph.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    run = subprocess.run([sys.executable, "-c", INT8_SCRIPT, str(int8_cache)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_int8_index_is_refused_with_torch_settings(int8_cache, tmp_path, corpus_copy):
    from conftest import make_settings

    from culture_rag import Assistant, IndexLoadError

    int8 = make_settings(tmp_path, cache_dir=int8_cache, passage_backend="onnx-int8")
    Assistant(int8).build(corpus_copy)
    assert Assistant.load(settings=int8).search("cultural trade between China and Belarus", k=3)
    with pytest.raises(IndexLoadError, match=r"manifest\.json.*onnx-int8.*configured model"):
        Assistant.load(settings=make_settings(tmp_path, cache_dir=int8_cache, passage_backend="torch"))
