"""Draw the train / validation split by document and write bench/quality/split.json.

    .venv/bin/python bench/quality/split.py [--shared ../shared]

The same seed and documents give the same file. It is committed: redraw it only when documents
are added to shared/ (a paper already drawn keeps its side only while the collection is unchanged)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from culture_rag.evaluate.pool import draw_split, pool, side_of

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared")
    parser.add_argument("--out", type=Path, default=HERE / "split.json")
    args = parser.parse_args()
    split = draw_split(args.shared)
    args.out.write_text(json.dumps(split, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    questions = pool(args.shared, HERE / "own_broad.jsonl")
    counts = Counter((q.set_name, side_of(q, split)) for q in questions)
    docs = Counter(split["documents"].values())
    print(f"{args.out}: {docs['train']} train documents, {docs['validation']} validation")
    for (set_name, side), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {set_name:14} {side or 'neither':10} {n}")


if __name__ == "__main__":
    main()
