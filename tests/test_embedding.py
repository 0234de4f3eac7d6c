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
    embedder = SentenceTransformerEmbedder(Settings(query_backend="torch"))
    text = "Belarus has a strong heritage in crafts. China exports films to Africa."
    vectors = embedder.embed_passages([text], [[(0, 40), (41, len(text))]])
    assert vectors.chunks.shape == (1, 384) and vectors.sentences.shape == (2, 384)
    whole = embedder.embed_query(text)
    assert float(vectors.chunks[0] @ whole) > 0.9999
    crafts = embedder.embed_query("crafts heritage")
    assert float(vectors.sentences[0] @ crafts) > float(vectors.sentences[1] @ crafts)
