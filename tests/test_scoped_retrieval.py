"""Retrieval scoped to chosen papers: the scope is applied inside the dense and keyword
searches, so a scoped question still gets its full k, and only from those papers."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from conftest import ARAGOG, make_settings

from culture_rag import Assistant, PaperNotFoundError
from culture_rag.answer.naming import resolve_papers
from culture_rag.index import dense
from culture_rag.index.dense import build_dense, search_parts
from culture_rag.index.lexical import KeywordIndex


@pytest.fixture
def built(tmp_path, corpus_copy, fake_embedder):
    for pdf in ("bert.pdf", "distilbert.pdf"):
        (corpus_copy / pdf).write_bytes((ARAGOG / pdf).read_bytes())
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus_copy)
    return assistant


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int, rows: list[tuple[int, int]]) -> list[int]:
    allowed = np.concatenate([np.arange(a, b) for a, b in rows])
    scores = vectors[allowed] @ query
    return [int(allowed[i]) for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture
def vectors():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


SCOPES = [[(100, 140)], [(0, 5), (2990, 3000)], [(1200, 2600)], [(1495, 1510)]]


def _ivf(vectors):
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 30, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    return index


@pytest.mark.parametrize("rows", SCOPES)
def test_dense_scope_is_exact_on_one_part_several_parts_and_an_inverted_file(vectors, rows):
    query = vectors[1500] + 0.1 * vectors[7]
    expected = _exact_top(vectors, query, 10, rows)
    # the shape a generation has after papers were added: parts end to end, rows continuing
    several = [(build_dense(vectors[:1000], 16), 0), (build_dense(vectors[1000:1500], 16), 1000), (_ivf(vectors[1500:]), 1500)]
    for parts in ([(build_dense(vectors, 16), 0)], several, [(_ivf(vectors), 0)]):
        scores, found = search_parts(parts, query, 10, rows)
        assert found.tolist() == expected, [type(p).__name__ for p, _ in parts]
        assert np.all(np.diff(scores) <= 1e-6)


def test_many_ranges_become_a_bitmap_with_the_same_result(vectors):
    rows = [(a, a + 3) for a in range(0, 3000, 50)]
    assert len(rows) > dense.MAX_RANGES
    query = vectors[10]
    parts = [(build_dense(vectors[:1000], 16), 0), (_ivf(vectors[1000:]), 1000)]
    assert search_parts(parts, query, 10, rows)[1].tolist() == _exact_top(vectors, query, 10, rows)


def test_dense_scope_smaller_than_k_pads_with_minus_one(vectors):
    parts = [(build_dense(vectors[:1000], 16), 0), (build_dense(vectors[1000:], 16), 1000)]
    _, found = search_parts(parts, vectors[3], 10, [(998, 1003)])
    assert sorted(found[:5].tolist()) == [998, 999, 1000, 1001, 1002] and found[5:].tolist() == [-1] * 5


def test_unscoped_dense_search_of_one_flat_part_is_faiss_search(vectors):
    flat = build_dense(vectors, 16)
    assert search_parts([(flat, 0)], vectors[9], 10)[1].tolist() == flat.search(vectors[9:10], 10)[1][0].tolist()


def test_keyword_scope_ranks_only_its_rows_with_whole_index_scores():
    texts = [f"cultural industry export {'trade ' * (i % 5)}row{i}" for i in range(400)] + ["unrelated text"] * 100
    index = KeywordIndex.build(texts)
    everything = index.search("cultural trade export", len(texts))
    rows = [(10, 60), (300, 320)]
    inside = [(int(r), float(s)) for r, s in zip(everything.rows, everything.scores) if any(a <= r < b for a, b in rows)]
    scoped = index.search("cultural trade export", 15, rows)
    full = dict(inside)
    assert len(scoped.rows) == 15 and all(int(r) in full for r in scoped.rows)
    # the same scores as unscoped, and the best 15 of the scope (rows tied at the cut may differ)
    assert scoped.scores.tolist() == pytest.approx([full[int(r)] for r in scoped.rows])
    assert scoped.scores.tolist() == pytest.approx([s for _, s in inside[:15]])


def test_scoped_search_gets_the_full_k_from_the_scoped_paper(built):
    shang = next(p for p in built.papers() if p.paper_id.startswith("shang"))
    unscoped = built.search("language model pre-training", k=8)
    assert any(h.paper.paper_id != shang.paper_id for h in unscoped)
    hits = built.search("language model pre-training", k=8, papers=[shang.paper_id])
    assert len(hits) == 8 and {h.paper.paper_id for h in hits} == {shang.paper_id}


def test_scope_of_two_papers_and_each_search_alone(built):
    ids = {p.paper_id for p in built.papers() if p.paper_id in ("bert", "distilbert")}
    assert len(ids) == 2
    hits = built.search("model size and speed", k=10, papers=ids)
    assert len(hits) == 10 and {h.paper.paper_id for h in hits} <= ids
    for flag in ("use_dense", "use_keyword"):
        other = "use_keyword" if flag == "use_dense" else "use_dense"
        alone = built._search(built.snapshot, "masked language model pre-training", 6, ["bert"], **{other: False})
        assert len(alone) == 6 and {h.paper.paper_id for h in alone} == {"bert"}


def test_scope_survives_an_added_paper(built, fake_embedder):
    """After an add the paper is a part of its own: the scope must still find its rows."""
    built.add([ARAGOG / "hellaswag.pdf"])
    assert [p.kind for p, _ in built.snapshot.parts] == ["merged", "segment"]
    hits = built.search("commonsense sentence completion", k=7, papers=["hellaswag"])
    assert len(hits) == 7 and {h.paper.paper_id for h in hits} == {"hellaswag"}
    older = built.search("commonsense sentence completion", k=7, papers=["bert"])
    assert len(older) == 7 and {h.paper.paper_id for h in older} == {"bert"}


def test_one_id_as_a_string_is_one_paper(built):
    assert {h.paper.paper_id for h in built.search("masked language model", k=3, papers="bert")} == {"bert"}


def test_unknown_paper_id_is_named(built):
    with pytest.raises(PaperNotFoundError, match="no-such-paper"):
        built.search("cultural industry", papers=["bert", "no-such-paper"])
    with pytest.raises(PaperNotFoundError, match="no-such-paper"):
        built.ask("cultural industry", papers=["no-such-paper"])


def test_ask_answers_from_the_scoped_paper_only(built):
    answer = built.ask("What is the cultural industry?", papers=["bert"])
    assert answer.passages and {h.paper.paper_id for h in answer.passages} == {"bert"}


def test_real_model_scoped_search_gets_the_full_k(real_corpus_assistant):
    assistant = real_corpus_assistant
    mao = next(p for p in assistant.papers() if p.paper_id.startswith("mao"))
    shang = next(p for p in assistant.papers() if p.paper_id.startswith("shang"))
    question = "paths for the cultural industry to go international"
    unscoped = assistant.search(question, k=8)
    assert any(h.paper.paper_id == shang.paper_id for h in unscoped)
    hits = assistant.search(question, k=8, papers=[mao.paper_id])
    assert len(hits) == 8 and {h.paper.paper_id for h in hits} == {mao.paper_id}


def test_real_model_named_papers_then_scoped_search(real_aragog_assistant):
    assistant = real_aragog_assistant
    named = resolve_papers("How was the HellaSwag dataset built?", assistant.papers())
    assert named.papers == ("hellaswag",)
    hits = assistant.search("How was the dataset built?", k=6, papers=named.papers)
    assert len(hits) == 6 and {h.paper.paper_id for h in hits} == {"hellaswag"}
    named = resolve_papers("Compare DistilBERT and BERT", assistant.papers())
    assert set(named.papers) == {"bert", "distilbert"}
    hits = assistant.search("model size, speed and accuracy", k=10, papers=named.papers)
    assert len(hits) == 10 and {h.paper.paper_id for h in hits} <= {"bert", "distilbert"}
