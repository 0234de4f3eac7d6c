"""The pooled question sets and their train / validation split by document.

Answers are tuned on train and judged on validation. A split by question would let a rule fitted
to one question about a paper help its neighbours on the same paper: splitting by document keeps
every validation paper unseen while tuning. The split is drawn once with a fixed seed and
committed (bench/quality/split.json): anyone re-running it gets the same sides, and a paper never
changes side when questions are added.

Collections (each is asked on one index of its documents):
- `library`: the two seed papers and the five arXiv PDFs; dev_seed, dev_aragog, dev_broad;
- `qasper`: QASPER train and dev papers pooled (207), and our own broad questions on them;
  asked with the paper picked, as users pick it in the app;
- `xquad`: the 24 English articles; questions in English, Chinese and Russian.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from culture_rag.answer.language import detect_language
from culture_rag.errors import CultureRagError
from culture_rag.evaluate.scoring import Question, contains_evidence, read_questions

SEED = 20261206
VALIDATION_SHARE = 0.5
SPLITS = ("train", "validation", "dev")


@dataclass(frozen=True)
class PooledQuestion:
    """A question of the pool: what it asks, on which collection, scoped to which paper."""

    question: Question
    set_name: str  # the file it comes from: dev_broad, qasper-train, own_broad, ...
    collection: str  # the index it is asked on
    documents: tuple[str, ...]  # the document groups it is about (split unit)
    scope: str | None = None  # the file name of the paper it is asked about (picked), or None
    in_context: str | None = None  # the question naming its paper by title
    language: str = "en"
    kind: str = ""  # extractive, abstractive, yes_no, unanswerable, broad, ...


@dataclass(frozen=True)
class Collection:
    name: str
    files: tuple[Path, ...]  # the documents to index


def _doc_group(collection: str, file_name: str) -> str:
    """The split unit: a file, except an XQuAD article, whose three language versions are one."""
    if collection == "xquad":
        file_name = re.sub(r"-(en|zh|ru)\.md$", "", file_name)
    return f"{collection}/{file_name}"


def collections(shared: Path) -> dict[str, Collection]:
    public = shared / "eval" / "public"
    library = sorted((shared / "corpus").glob("*.*")) + sorted((shared / "pdfs" / "aragog").glob("*.pdf"))
    qasper = sorted((public / "qasper-train" / "docs").glob("*.md")) + sorted((public / "qasper-dev" / "docs").glob("*.md"))
    xquad = sorted((public / "xquad" / "docs").glob("*-en.md"))
    found = {"library": library, "qasper": qasper, "xquad": xquad}
    for name, files in found.items():
        if not files:
            raise CultureRagError(f"{shared}: no documents for the {name} collection; point --shared at the shared/ folder")
    return {name: Collection(name, tuple(files)) for name, files in found.items()}


def _question_sets(shared: Path, own: Path | None) -> list[tuple[str, str, Path]]:
    public = shared / "eval" / "public"
    sets = [
        ("dev_seed", "library", shared / "eval" / "dev_seed.jsonl"),
        ("dev_aragog", "library", shared / "eval" / "dev_aragog.jsonl"),
        ("dev_broad", "library", shared / "eval" / "dev_broad.jsonl"),
        ("qasper-train", "qasper", public / "qasper-train" / "questions.jsonl"),
        ("qasper-dev", "qasper", public / "qasper-dev" / "questions.jsonl"),
        ("xquad", "xquad", public / "xquad" / "questions.jsonl"),
    ]
    if own is not None and own.exists():
        sets.append(("own_broad", "qasper", own))
    return sets


def pool(shared: Path, own: Path | None = None) -> list[PooledQuestion]:
    """Every question of the dev sets, the public sets and our own, with its documents."""
    out = []
    texts = _plain_texts(collections(shared)["library"].files)
    for set_name, set_collection, path in _question_sets(shared, own):
        raws = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for q, raw in zip(read_questions(path), raws, strict=True):
            # Our own questions are on QASPER's papers, or say "collection": "library" (asked of the library, unscoped)
            collection = "library" if set_name == "own_broad" and raw.get("collection") == "library" else set_collection
            files = list(q.sources) or list(raw.get("asked_about") or ())
            if not files and q.evidence and collection == "library":
                files = [name for name, text in texts.items() if contains_evidence(text, list(q.evidence))]
            if collection == "xquad":
                files = [f for f in files if f.endswith("-en.md")]  # only the English text is indexed
            documents = tuple(dict.fromkeys(_doc_group(collection, f) for f in files))
            scope = files[0] if collection == "qasper" and files else None
            out.append(
                PooledQuestion(
                    question=q,
                    set_name=set_name,
                    collection=collection,
                    documents=documents,
                    scope=scope,
                    in_context=raw.get("question_in_context"),
                    language=raw.get("language") or detect_language(q.question),
                    kind=raw.get("type", ""),
                )
            )
    return out + crossed(out)


def _plain_texts(files: tuple[Path, ...]) -> dict[str, str]:
    """The text files of a collection by name. dev_seed names no sources: a question is about
    the paper whose text holds its evidence, so that it stays on that paper's side of the split
    (until session 15 it went by a hash of its id, and three questions on a validation paper
    were in train)."""
    texts = {}
    for f in files:
        if f.suffix in (".txt", ".md"):
            try:
                texts[f.name] = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CultureRagError(f"{f}: cannot be read as UTF-8 text ({exc}); restore the file from the shared/ folder") from exc
    return texts


def crossed(questions: list[PooledQuestion]) -> list[PooledQuestion]:
    """Questions asked of a collection about something else, whose right reply is a decline:
    XQuAD's English questions (Warsaw, Victoria, the Methodist church, ...) asked of the
    library, and the library's English questions asked of the XQuAD articles. They keep their
    documents, so each stays on its side of the split. Without them nearly every unanswerable
    question in the pool is QASPER's, asked of the one paper it is about."""
    out = []
    for q in questions:
        if q.language != "en" or not q.question.answerable or q.set_name not in ("xquad", "dev_seed", "dev_broad"):
            continue
        target = "library" if q.collection == "xquad" else "xquad"
        unanswerable = Question(id=f"crossed-{q.question.id}", question=q.question.question, answerable=False)
        out.append(PooledQuestion(unanswerable, f"crossed-{q.set_name}", target, q.documents, kind="unanswerable"))
    return out


def draw_split(shared: Path, seed: int = SEED, share: float = VALIDATION_SHARE) -> dict:
    """Each collection's documents shuffled with the seed; the first `share` go to validation.
    Drawn per collection so that both sides hold seed papers, arXiv papers, QASPER papers and
    XQuAD articles."""
    sides: dict[str, str] = {}
    found = collections(shared)
    library = found["library"].files
    for stratum, collection, files in (
        ("seed", "library", [f for f in library if f.parent.name == "corpus"]),
        ("aragog", "library", [f for f in library if f.parent.name == "aragog"]),
        ("qasper", "qasper", list(found["qasper"].files)),
        ("xquad", "xquad", list(found["xquad"].files)),
    ):
        groups = sorted({_doc_group(collection, f.name) for f in files})
        random.Random(f"{seed}/{stratum}").shuffle(groups)
        cut = max(1, round(len(groups) * share))
        for i, group in enumerate(groups):
            sides[group] = "validation" if i < cut else "train"
    return {"seed": seed, "validation_share": share, "documents": dict(sorted(sides.items()))}


def side_of(q: PooledQuestion, split: dict) -> str | None:
    """train or validation when all its documents are on that side; a question about no
    document (an unanswerable one of the whole library) goes by a seeded hash of its id; a
    question spanning both sides is in neither (it is still in dev)."""
    documents = split["documents"]
    if not q.documents:
        digest = hashlib.sha256(f"{split['seed']}/{q.question.id}".encode()).digest()
        return "validation" if digest[0] < 256 * split["validation_share"] else "train"
    sides = {documents.get(d) for d in q.documents}
    if None in sides:
        raise CultureRagError(f"question {q.question.id}: document {sorted(q.documents)} is not in the split; redraw it")
    return sides.pop() if len(sides) == 1 else None


def select(questions: list[PooledQuestion], split: dict, name: str) -> list[PooledQuestion]:
    """The questions of a split: train, validation, or dev (the three dev sets whole)."""
    if name not in SPLITS:
        raise CultureRagError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
    if name == "dev":
        return [q for q in questions if q.set_name.startswith("dev_")]
    return [q for q in questions if side_of(q, split) == name]


def read_split(path: Path) -> dict:
    try:
        split = json.loads(Path(path).read_text(encoding="utf-8"))
        split["documents"], split["seed"], split["validation_share"]  # noqa: B018 - the fields it must have
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CultureRagError(f"{path}: not a split file ({exc}); draw it with `python bench/quality/split.py`") from None
    return split
