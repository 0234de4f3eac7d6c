"""Calibrate the extractive answerer and the refusal threshold on the dev sets.

    .venv/bin/python bench/calibrate.py [--index-seed DIR] [--index-aragog DIR]

Retrieval runs once per question; every grid point re-scores the same passages, so the grid
is cheap. Prints the best settings by a score that weighs citation precision, keyword hits and
both abstention errors, and the table of the top candidates.
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
    from culture_rag.answer import ExtractiveConfig, extractive_answer
    from culture_rag.evaluation import Outcome, metrics, read_questions

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    seed = index_for(ROOT / "corpus", tmp / "seed")
    aragog = index_for(SHARED / "pdfs" / "aragog", tmp / "aragog", embedder=seed.embedder)
    sets = []
    for assistant, name in ((seed, "dev_seed.jsonl"), (aragog, "dev_aragog.jsonl")):
        for q in read_questions(SHARED / "eval" / name):
            hits = assistant.search(q.question, k=assistant.settings.top_k)
            sets.append((name, assistant, q, hits, assistant.query_vector(q.question)))
    grid = itertools.product(
        [0.35, 0.45, 0.55], [0.35, 0.45, 0.55], [0.0, 0.1, 0.2], [0.85, 0.9, 0.95], [1, 2, 3], [0.3, 0.35, 0.4, 0.45, 0.5]
    )
    rows = []
    for sw, ow, pw, keep, most, floor in grid:
        config = ExtractiveConfig(most, floor, keep, sentence_weight=sw, overlap_weight=ow, passage_weight=pw)
        by_set: dict[str, list[Outcome]] = {}
        for name, assistant, q, hits, qv in sets:
            draft = extractive_answer(q.question, q.question, qv, hits, assistant.snapshot.keyword, config)
            by_set.setdefault(name, []).append(
                Outcome(q, (), (), draft.text, draft.answered, tuple(c.chunk.text for c in draft.citations),
                        tuple(c.paper.source for c in draft.citations), 0, False, 0.0, 0.0)
            )
        m = {name: metrics(outs) for name, outs in by_set.items()}
        s, a = m["dev_seed.jsonl"], m["dev_aragog.jsonl"]
        abst = (s["abstention"] + (a["abstention"] if a["abstention"] is not None else s["abstention"])) / 2
        false_abst = (s["false_abstention"] + a["false_abstention"]) / 2
        # A setting that cites nothing on a set has no precision (None): it earns nothing there.
        objective = _or0(s["citation_precision"]) + _or0(s["keyword_hit"]) + _or0(a["citation_precision"]) + abst - 2 * false_abst
        rows.append((objective, sw, ow, pw, keep, most, floor, s, a))
    rows.sort(key=lambda r: -r[0])
    print("objective  sent  over  pass  keep  most  floor | seed: cit_prec kw_hit abst false_abst | aragog: cit_prec abst false_abst")
    for obj, sw, ow, pw, keep, most, floor, s, a in rows[: args.top]:
        print(
            f"{obj:9.3f}  {sw:.2f}  {ow:.2f}  {pw:.2f}  {keep:.2f}  {most}     {floor:.2f}  | "
            f"{_or0(s['citation_precision']):.3f} {_or0(s['keyword_hit']):.3f} {s['abstention']:.3f} {s['false_abstention']:.3f} | "
            f"{_or0(a['citation_precision']):.3f} {a['abstention'] if a['abstention'] is not None else float('nan'):.3f} {a['false_abstention']:.3f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)


def _or0(value: float | None) -> float:
    return 0.0 if value is None else value


if __name__ == "__main__":
    sys.exit(main())
