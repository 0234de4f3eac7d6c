"""Calibrate the refusal thresholds of the extractive answerer on the three dev sets.

    .venv/bin/python bench/calibrate.py [--top N]

Every grid point of answer_min_score (the best sentence's score) and answer_min_coverage (the
share of the question's topic words the passages hold) answers every question of dev_seed,
dev_aragog and dev_broad again (extractive answers take milliseconds; translations are cached).
Prints the rank of the shipped defaults and the top candidates by a score that weighs citation
precision, keyword hits, key points and both abstention errors on each set.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def index_for(corpus: Path, tmp: Path, embedder=None):
    from culture_rag import Assistant, Settings

    (tmp / "corpus").mkdir(parents=True)
    for f in corpus.iterdir():
        if f.is_file():
            shutil.copy(f, tmp / "corpus" / f.name)
    assistant = Assistant(Settings(index_dir=tmp / "index", corpus_dir=tmp / "corpus"), embedder=embedder)
    assistant.build(tmp / "corpus")
    return assistant


def main() -> None:
    from culture_rag.evaluate.scoring import key_point_metrics, metrics, read_questions, run

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    workdir = tempfile.TemporaryDirectory()  # removed when main returns
    tmp = Path(workdir.name)
    seed = index_for(ROOT / "corpus", tmp / "seed")
    aragog = index_for(SHARED / "pdfs" / "aragog", tmp / "aragog", embedder=seed.embedder)
    seven = index_for(_seven(tmp / "seven-papers"), tmp / "seven", embedder=seed.embedder)
    sets = [(seed, "dev_seed.jsonl"), (aragog, "dev_aragog.jsonl"), (seven, "dev_broad.jsonl")]
    questions = {name: read_questions(SHARED / "eval" / name) for _, name in sets}
    defaults = (seed.settings.answer_min_score, seed.settings.answer_min_coverage)
    rows = []
    for floor, cover in itertools.product([0.3, 0.35, 0.4, 0.45, 0.5], [0.3, 0.4, 0.5, 0.6, 0.7]):
        m = {}
        for assistant, name in sets:
            assistant.settings = assistant.settings.model_copy(
                update={"answer_min_score": floor, "answer_min_coverage": cover}
            )
            outcomes = run(assistant, questions[name])
            m[name] = {**metrics(outcomes), **key_point_metrics(outcomes)}
        s, a, b = m["dev_seed.jsonl"], m["dev_aragog.jsonl"], m["dev_broad.jsonl"]
        # Both abstention errors on every set, citation precision, keywords and key points.
        objective = (
            _or0(s["citation_precision"]) + _or0(s["keyword_hit"]) + _or0(a["citation_precision"])
            + _or0(b["key_point_coverage"]) + _or0(s["abstention"]) + _or0(b["abstention"])
            - 2 * (s["false_abstention"] + a["false_abstention"] + b["false_abstention"])
        )
        rows.append((objective, floor, cover, s, a, b))
    rows.sort(key=lambda r: -r[0])
    rank = next(i for i, r in enumerate(rows, start=1) if (r[1], r[2]) == defaults)
    print(f"shipped defaults (answer_min_score {defaults[0]}, answer_min_coverage {defaults[1]}) rank {rank} of {len(rows)}")
    print("objective  floor  cover | seed: cit_prec kw_hit abst false | aragog: cit_prec false | broad: key_pts abst false")
    for obj, floor, cover, s, a, b in rows[: args.top]:
        print(
            f"{obj:9.3f}  {floor:.2f}   {cover:.2f}  | {_or0(s['citation_precision']):.3f} {_or0(s['keyword_hit']):.3f} "
            f"{_or0(s['abstention']):.3f} {s['false_abstention']:.3f} | {_or0(a['citation_precision']):.3f} "
            f"{a['false_abstention']:.3f} | {_or0(b['key_point_coverage']):.3f} {_or0(b['abstention']):.3f} {b['false_abstention']:.3f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)


def _seven(folder: Path) -> Path:
    """corpus/ and the five arXiv PDFs in one folder: dev_broad is scored on one index of all seven."""
    folder.mkdir(parents=True)
    for f in [*(ROOT / "corpus").iterdir(), *(SHARED / "pdfs" / "aragog").glob("*.pdf")]:
        if f.is_file():
            shutil.copy(f, folder / f.name)
    return folder


def _or0(value: float | None) -> float:
    return 0.0 if value is None else value


if __name__ == "__main__":
    sys.exit(main())
