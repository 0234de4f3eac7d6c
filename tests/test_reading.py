"""The fitted answerer: its weights file (checked, reproducible), its features, its choices and
declines, on a fake embedder and a word-overlap reranker (fast), then on the real models."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from culture_rag.errors import CultureRagError
from culture_rag.evaluate.scoring import Question
from culture_rag.reading import model as weights
from culture_rag.reading.answerer import ANSWERABLE_NAMES, FittedAnswerer
from culture_rag.reading.candidates import Candidate
from culture_rag.reading.features import NAMES
from culture_rag.reading.fitting import Labelled, fit, labels, untrained
from culture_rag.types import Span

ROOT = Path(__file__).resolve().parents[1]


class OverlapReranker:
    """A test fake of rerank.Reranker: the share of the question's words in the passage."""

    def score(self, query, passages):
        q = set(re.findall(r"\w+", query.lower()))
        return np.array([len(q & set(re.findall(r"\w+", p.lower()))) / (len(q) or 1) for p in passages], np.float32)


def test_packaged_weights_load_after_their_checksum_and_refuse_tampering(tmp_path):
    model = weights.load()
    assert model.sentence.names == NAMES and model.answerable.names == ANSWERABLE_NAMES
    assert 0 < model.decline_below < 1 and model.max_sentences >= 1
    copy = tmp_path / "answerer.json"
    shutil.copy(weights.packaged_path(), copy)
    shutil.copy(weights.packaged_path().with_name("answerer.json.sha256"), tmp_path / "answerer.json.sha256")
    assert weights.load(copy) == model
    copy.write_text(copy.read_text().replace('"keep_above": ', '"keep_above": 1'), encoding="utf-8")
    with pytest.raises(CultureRagError, match="answerer.json: sha256 .* does not match"):
        weights.load(copy)
    (tmp_path / "answerer.json.sha256").unlink()
    with pytest.raises(CultureRagError, match="missing"):
        weights.load(copy)


def test_weights_of_another_shape_are_refused_with_what_to_do(tmp_path):
    model = untrained(10)
    broken = json.loads(model.to_json())
    broken["sentence"]["names"] = broken["sentence"]["names"][:-1]
    path = tmp_path / "w.json"
    weights.save(weights.AnswerModel.from_json(json.dumps(broken), "w"), path)
    loaded = weights.load(path)
    with pytest.raises(CultureRagError, match="refit"):
        loaded.sentence.logit(np.zeros((1, len(NAMES))))


def test_labels_are_quotes_inside_gold_evidence_or_making_a_key_point():
    q = Question("q", "What data?", True, evidence=("We use the Penn Treebank. It has 40k sentences.",), key_points=(("wsj",),))
    got = labels(["We use the Penn Treebank.", "It is fun.", "Taken from the WSJ section.", "We use the Penn Treebank. It has 40k sentences. More."], q)
    assert got.tolist() == [True, False, True, True]
    assert not labels(["We use the Penn Treebank."], Question("u", "x", False)).any()


def test_a_citation_is_labelled_right_by_its_passage_as_citation_precision_judges_it():
    from culture_rag.reading.fitting import passage_labels

    q = Question("q", "What data?", True, evidence=("We use the Penn Treebank.",), sources=("a.pdf",))
    assert passage_labels(["Intro. We use the Penn Treebank. More.", "Other text."], ["b.pdf", "a.pdf"], q).tolist() == [True, False]
    by_source = Question("s", "Who?", True, sources=("a.pdf",))
    assert passage_labels(["x", "y"], ["b.pdf", "a.pdf"], by_source).tolist() == [False, True]
    assert passage_labels(["x"], ["a.pdf"], Question("n", "?", True)) is None  # nothing to judge by
    assert not passage_labels(["We use the Penn Treebank."], ["a.pdf"], Question("u", "?", False)).any()


def _synthetic_records(seed: int) -> list[Labelled]:
    """Readings whose first feature (dense) separates evidence from the rest, with noise."""
    from culture_rag.reading.answerer import Reading, answerable_row

    rng = np.random.default_rng(seed)
    records = []
    for i in range(60):
        n = 8
        x = rng.normal(size=(n, len(NAMES)))
        y = np.zeros(n, bool)
        answerable = i % 4 != 0
        if answerable:
            y[rng.integers(n)] = True
            x[y, 0] += 3.0
        vectors = rng.normal(size=(n, 4))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cands = tuple(Candidate(0, j, "t", Span(100 * j, 100 * j + 50), v, "paper") for j, v in enumerate(vectors))
        logits = np.zeros(n)
        records.append(Labelled(Question(str(i), "q", answerable), Reading(cands, x, logits, answerable_row(x, logits), np.arange(n)), y, tuple("t" for _ in range(n))))
    return records


def test_fitting_is_reproducible_and_learns_the_separating_feature():
    a, figures = fit(_synthetic_records(7), rerank_top=10)
    b, _ = fit(_synthetic_records(7), rerank_top=10)
    assert a.to_json() == b.to_json()  # same data, same bytes
    coef = dict(zip(NAMES, a.sentence.coef))
    assert max(coef, key=lambda k: abs(coef[k])) == NAMES[0] and coef[NAMES[0]] > 0
    assert figures["evidence_found"] > 0.8
    assert a.fitted_on.endswith("constants chosen on 5 folds")
    # Too few questions for every fold's models to see an unanswerable one: chosen in-sample, and the file says so.
    few, _ = fit(_synthetic_records(7)[1:6], rerank_top=10)  # one unanswerable question: its fold would train on none
    assert few.fitted_on.endswith("constants chosen on the models' own scores")


def test_the_most_sentences_are_searched_only_as_far_as_the_grid_allows():
    """How long an answer may be is a product limit (GRID stops at 5): a grid that stops at 2
    gives at most 2, and the search never goes past it."""
    from culture_rag.reading.fitting import GRID

    short, _ = fit(_synthetic_records(7), rerank_top=10, grid=(GRID[0], GRID[1], (1, 2)))
    assert short.max_sentences in (1, 2)
    assert fit(_synthetic_records(7), rerank_top=10)[0].max_sentences in GRID[2]


def test_selection_is_chosen_on_scores_from_models_that_never_saw_the_question_s_paper():
    """Cross-fitting: a paper's questions share one fold, and each question is scored by models
    fitted without that fold, so the constants are chosen on scores like a new paper's."""
    from dataclasses import replace

    from culture_rag.reading.fitting import cross_scored, fold_of, models

    records = [replace(r, group=f"paper-{i // 3}") for i, r in enumerate(_synthetic_records(5))]  # three questions a paper
    folds = [fold_of(r, 4) for r in records]
    for i in range(0, len(records), 3):
        assert len(set(folds[i:i + 3])) == 1  # a paper's questions stay together
    assert set(folds) == {0, 1, 2, 3}
    scored = {r.question.id: r for r in cross_scored(records, folds=4)}
    assert sorted(scored) == sorted(r.question.id for r in records)  # every question scored once
    held_out = [r for r, f in zip(records, folds) if f == 2]
    sentence, answerable, _, _ = models([r for r, f in zip(records, folds) if f != 2])
    everything, _, _, _ = models(records)
    for r in held_out:
        assert np.allclose(scored[r.question.id].reading.logits, sentence.logit(r.reading.x))
        assert not np.allclose(scored[r.question.id].reading.logits, everything.logit(r.reading.x))
        assert scored[r.question.id].p_answerable == pytest.approx(float(answerable.probability(scored[r.question.id].reading.answerable_x[None, :])[0]))


def test_the_listwise_scorer_ranks_within_a_question_and_ignores_what_only_tells_questions_apart():
    """A feature that is the same for every candidate of a question (here: high exactly when the
    question has evidence) cannot change which candidate comes first. The pointwise regression
    leans on it; the listwise scorer gives it almost no weight and still ranks by the feature
    that does separate evidence."""
    from culture_rag.reading.fitting import linear, listwise

    records = _synthetic_records(3)
    question_level = NAMES.index("question_words")
    groups = []
    for r in records:
        x = r.reading.x.copy()
        x[:, question_level] = 2.0 if r.labels.any() else -2.0
        groups.append((x, r.labels))
    ranked = listwise(groups, NAMES)
    pointwise = linear(np.vstack([g for g, _ in groups]), np.concatenate([y for _, y in groups]), NAMES)
    assert abs(ranked.coef[question_level]) < 0.05 < abs(pointwise.coef[question_level])
    assert max(range(len(NAMES)), key=lambda i: abs(ranked.coef[i])) == 0 and ranked.coef[0] > 0
    firsts = [y[np.argmax(ranked.logit(x))] for x, y in groups if y.any()]
    assert np.mean(firsts) > 0.9
    with pytest.raises(ValueError, match="listwise"):
        fit(records, rerank_top=10, learner="forest")


@pytest.fixture(scope="module")
def fake_assistant(tmp_path_factory):
    from conftest import CORPUS, make_settings
    from fakes import HashEmbedder

    from culture_rag import Assistant

    tmp = tmp_path_factory.mktemp("reading")
    shutil.copytree(CORPUS, tmp / "corpus")
    settings = make_settings(tmp)
    assistant = Assistant(settings, embedder=HashEmbedder(), reader=FittedAnswerer(weights.load(), OverlapReranker()))
    assistant.build(tmp / "corpus")
    return assistant


def test_the_fitted_answer_quotes_retrieved_sentences_and_cites_each(fake_assistant):
    answer = fake_assistant.ask("What is the export value of Chinese cultural products?")
    assert answer.answered and answer.citations
    for c in answer.citations:
        assert c.quote and c.quote in c.chunk.text
        assert f"[{c.n}]" in answer.text
    assert len(answer.citations) <= weights.load().max_sentences


def test_baseline_gives_the_top_hybrid_sentences_and_never_declines(fake_assistant):
    from culture_rag import Assistant

    baseline = Assistant(library=fake_assistant.library, reader=fake_assistant.reader(), answerer="baseline")
    answer = baseline.ask("Who won the 1998 football world cup in France?")
    assert answer.answered and len(answer.citations) == 5


def test_fit_script_reproduces_its_weights_on_real_train_questions(tmp_path):
    """bench/quality/fit.py on the first train questions, twice: the same bytes (real models)."""
    pytest.importorskip("sklearn")
    outs = []
    for run in range(2):
        out = tmp_path / f"w{run}.json"
        subprocess.run([sys.executable, str(ROOT / "bench/quality/fit.py"), "--limit", "12", "--out", str(out),
                        "--cache", str(tmp_path / "cache")], check=True, capture_output=True, text=True, timeout=900)
        outs.append(out.read_text(encoding="utf-8"))
    assert outs[0] == outs[1]
    assert weights.load(tmp_path / "w0.json").sentence.names == NAMES


def test_a_question_naming_its_scoped_paper_by_title_asks_what_it_asks():
    from culture_rag.reading.scope import without_titles
    from culture_rag.types import PaperInfo

    paper = PaperInfo("p", "p.md", "Cross-Lingual Adaptation Using Universal Dependencies", (), "md", None, 1, "", "", "")
    asked = 'In the paper "Cross-Lingual Adaptation Using Universal Dependencies": What low-resource languages were used?'
    assert without_titles(asked, [paper]) == "What low-resource languages were used?"
    assert without_titles("What does the cross-lingual adaptation rely on?", [paper]) == "What does the cross-lingual adaptation rely on?"
    assert without_titles(asked, []) == asked  # unscoped: the title is what finds the paper
    # A title stored with more than the user typed (a subtitle, an identifier line read with it),
    # or typed in other case and without quotes, is still the title.
    longer = PaperInfo("p", "p.md", "Cross-Lingual Adaptation Using Universal Dependencies: A Study", (), "md", None, 1, "", "", "")
    assert without_titles(asked, [longer]) == "What low-resource languages were used?"
    loose = "in the paper cross-lingual adaptation using universal dependencies, which languages were used?"
    assert without_titles(loose, [paper]) == "which languages were used?"


def test_a_passage_cited_from_deeper_than_the_k_shown_is_shown_after_them(fake_assistant):
    """The fitted reader reads most of a chosen paper; a sentence it quotes from a passage below
    the k best must bring that passage along, or the citation points at nothing on screen."""
    from culture_rag.answer.citations import cite
    from culture_rag.assistant import shown_passages

    found = fake_assistant.search("cultural industry in Belarus", k=10)
    deep = found[7]
    citation = cite(1, deep, deep.chunk.sentences[0])
    shown = shown_passages(found[:3], found, [citation])
    assert [h.chunk.chunk_id for h in shown] == [h.chunk.chunk_id for h in (*found[:3], deep)]
    assert shown_passages(found[:3], found, [cite(1, found[0], found[0].chunk.sentences[0])]) == tuple(found[:3])
