"""Calibrate the support threshold of the citation check on dev_seed.

    .venv/bin/python bench/calibrate_support.py

Claims that are supported: each answerable question's evidence, checked against the passages
retrieved for that question. Claims that are not: the evidence of every other question, checked
against the same passages (minus any passage that happens to hold it). Prints both score
distributions and the error rates at candidate thresholds.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, build_index  # noqa: E402


def main() -> None:
    from culture_rag.answer.citations import support_of
    from culture_rag.evaluate.scoring import contains_evidence, read_questions

    workdir = tempfile.TemporaryDirectory()  # removed when main returns
    tmp = Path(workdir.name)
    assistant = build_index(tmp / "seed")
    questions = [q for q in read_questions(SHARED / "eval" / "dev_seed.jsonl") if q.answerable and q.evidence]
    idf = assistant.snapshot.keyword.idf
    positives, negatives = [], []
    for q in questions:
        hits = assistant.search(q.question, k=assistant.settings.top_k)
        for other in questions:
            claim = other.evidence[0]
            vector = assistant.embedder.embed_texts([claim])[0]
            holding = [h for h in hits if contains_evidence(h.chunk.text, list(other.evidence))]
            if other is q:
                scores = [s.score for h in holding if (s := support_of(claim, vector, h, idf))]
                positives.extend(scores[:1])
            elif not holding:
                negatives.append(max((s.score for h in hits if (s := support_of(claim, vector, h, idf))), default=0.0))
    pos, neg = np.array(positives), np.array(negatives)
    print(f"supported claims: {len(pos)}, min {pos.min():.3f}, p10 {np.percentile(pos, 10):.3f}, median {np.median(pos):.3f}")
    print(f"unsupported claims: {len(neg)}, median {np.median(neg):.3f}, p90 {np.percentile(neg, 90):.3f}, max {neg.max():.3f}")
    print("threshold  supported-but-rejected  unsupported-but-kept")
    for t in (0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
        print(f"{t:9.2f}  {np.mean(pos < t):22.3f}  {np.mean(neg >= t):20.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
