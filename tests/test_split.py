"""The train / validation split is by document: no question about a validation paper is in train.
Checked on the real pooled sets of ../shared and the committed bench/quality/split.json."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from conftest import SHARED

from culture_rag.errors import CultureRagError
from culture_rag.evaluate.pool import _plain_texts, draw_split, pool, read_split, select, side_of
from culture_rag.evaluate.scoring import contains_evidence

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT / "bench" / "quality" / "split.json"
OWN = ROOT / "bench" / "quality" / "own_broad.jsonl"


def test_the_committed_split_is_the_one_the_seed_draws():
    assert draw_split(SHARED) == read_split(SPLIT)


def test_no_document_has_questions_on_both_sides():
    split = read_split(SPLIT)
    sides = defaultdict(set)
    for q in pool(SHARED, OWN):
        side = side_of(q, split)
        if side is not None:
            for document in q.documents:
                sides[document].add(side)
    both = sorted(d for d, s in sides.items() if len(s) > 1)
    assert not both, f"documents with questions in train and in validation: {both}"
    assert {"train", "validation"} == set().union(*sides.values())


def test_seed_questions_belong_to_the_paper_that_holds_their_evidence():
    """dev_seed names no sources: each answerable question goes with the one paper whose text
    holds its evidence, so the two seed papers' questions sit on their papers' sides."""
    split = read_split(SPLIT)
    texts = {p.name: p.read_text(encoding="utf-8") for p in (SHARED / "corpus").iterdir() if p.suffix in (".md", ".txt")}
    seed = [q for q in pool(SHARED, OWN) if q.set_name == "dev_seed" and q.question.answerable]
    assert seed
    for q in seed:
        holders = [name for name, text in texts.items() if contains_evidence(text, list(q.question.evidence))]
        assert q.documents == tuple(f"library/{name}" for name in holders), q.question.id
        assert side_of(q, split) == split["documents"][q.documents[0]], q.question.id
    train = {q.question.id for q in select(pool(SHARED, OWN), split, "train")}
    validation = {q.question.id for q in select(pool(SHARED, OWN), split, "validation")}
    assert not train & validation
    assert any(q.question.id in train for q in seed) and any(q.question.id in validation for q in seed)


def test_an_unreadable_seed_paper_is_named(tmp_path):
    good, bad = tmp_path / "good.md", tmp_path / "bad.txt"
    good.write_text("# A paper\n\nIt says something.", encoding="utf-8")
    bad.write_bytes(b"\xff\xfe not utf-8 \x80")
    assert _plain_texts((good,)) == {"good.md": "# A paper\n\nIt says something."}
    with pytest.raises(CultureRagError, match="bad.txt: cannot be read as UTF-8 text"):
        _plain_texts((good, bad))


def test_our_own_questions_go_to_the_collection_they_name(tmp_path):
    """own_broad.jsonl holds questions on QASPER's papers (asked with the paper picked) and, with
    "collection": "library", on the library's papers (asked of the whole library, as dev_broad)."""
    own = tmp_path / "own.jsonl"
    own.write_text(
        '{"id": "o-1", "question": "What does DistilBERT keep of BERT?", "answerable": true, "sources": ["distilbert.pdf"], '
        '"key_points": [["97%"]], "collection": "library"}\n'
        '{"id": "o-2", "question": "What data do they use?", "answerable": true, "sources": ["1602.03661.md"], '
        '"key_points": [["lexicon"]], "collection": "qasper-train"}\n',
        encoding="utf-8",
    )
    mine = {q.question.id: q for q in pool(SHARED, own) if q.set_name == "own_broad"}
    assert (mine["o-1"].collection, mine["o-1"].documents, mine["o-1"].scope) == ("library", ("library/distilbert.pdf",), None)
    assert (mine["o-2"].collection, mine["o-2"].documents, mine["o-2"].scope) == ("qasper", ("qasper/1602.03661.md",), "1602.03661.md")
    split = read_split(SPLIT)
    assert side_of(mine["o-1"], split) == split["documents"]["library/distilbert.pdf"]
