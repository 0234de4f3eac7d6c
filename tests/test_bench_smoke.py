"""The scale paths the benchmarks rely on give the same answers as the simple ones, and the
bench helpers work. No timings here: speed is shown by bench/*.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_keyword_top_k_matches_bm25s():
    """The top-k shortcut (ranking only documents above a sampled floor) returns bm25s's top k."""
    import bm25s

    from culture_rag.index.lexical import KeywordIndex, Postings, TermCounts, content_words, tokenize

    texts = [f"cultural industry trade number {i} " + "export " * (i % 5) + "belt road " * (i % 3) for i in range(300)]
    reference = bm25s.BM25()
    reference.index(tokenize(texts), show_progress=False)
    whole = KeywordIndex.build(texts)
    parts = KeywordIndex([(Postings.of_counts(TermCounts.of_texts(texts[:200])), 0), (Postings.of_counts(TermCounts.of_texts(texts[200:])), 200)])
    for query in ("cultural export", "belt and road export trade", "export export road", "unknownword"):
        known = [t for t in content_words(query) if t in reference.vocab_dict]
        for index in (whole, parts):
            hits = index.search(query, 20)
            if not known:
                assert len(hits.rows) == 0
                continue
            _, scores = reference.retrieve([known], k=20, show_progress=False, n_threads=1)
            expected = np.sort(scores[0][scores[0] > 0])[::-1]
            assert np.allclose(hits.scores, expected, rtol=1e-5)
            assert list(hits.scores) == sorted(hits.scores, reverse=True)


def test_content_words_match_bm25s_tokenize():
    import bm25s

    from culture_rag.index.lexical import _stemmer, content_words

    for text in ("The Belt and Road's cultural industries, e.g. films (2019).", "Ünïcödé café x2 of THE a", ""):
        expected = bm25s.tokenize([text], stopwords="en", stemmer=_stemmer(), show_progress=False, return_ids=False)[0]
        assert content_words(text) == expected


def test_a_large_part_is_an_inverted_file_that_finds_exact_neighbours(monkeypatch):
    from culture_rag.index import dense

    monkeypatch.setattr(dense, "IVF_THRESHOLD", 100)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = dense.build_dense(vectors, 16)
    assert dense.part_type(len(vectors)) == "ivf" and type(index).__name__ == "IndexIVFFlat"
    scores, rows = dense.search_parts([(index, 0)], vectors[7], 10)
    assert rows.shape == (10,) and rows[0] == 7
    assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_bench_helpers():
    import common

    queries = common.distinct_queries(200)
    assert len(set(queries)) == 200
    assert common.p50([3, 1, 2]) == 2 and common.p95(list(range(101))) == 95
