"""Score splits of the pooled questions with the baseline and the fitted reader, side by side.

    .venv/bin/python bench/quality/run.py --split train validation dev [--engines baseline fitted]
        [--forms picked named] [--languages en zh ru] [--dump train-answers.jsonl] [--json out.json]

Each (split, group, form, engine) line comes from one run over the same indexes. --dump writes
every train answer for reading one by one; it refuses validation (read only its aggregates)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from culture_rag.evaluate.compare import ENGINES, FORMS, run_splits, table
from culture_rag.evaluate.pool import read_split

HERE = Path(__file__).resolve().parent


def cpu_flags() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in info if line.startswith("flags")).split()
        model = next(line for line in info if line.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor()
    return f"{model}; " + " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "culture-rag" / "eval")
    parser.add_argument("--split", nargs="+", default=["train", "validation", "dev"])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--forms", nargs="+", default=["picked"], choices=FORMS)
    parser.add_argument("--languages", nargs="+", default=["en"])
    parser.add_argument("--limit", type=int, default=0, help="at most this many questions per split (0: all)")
    parser.add_argument("--dump", type=Path, help="write every train answer here, one JSON line each")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.dump and set(args.split) - {"train"}:
        sys.exit("--dump is for train answers only: validation is read by its aggregates")
    dump = args.dump.open("w", encoding="utf-8") if args.dump else None

    def write(pq, engine, form, outcome):
        dump.write(json.dumps({
            "id": pq.question.id, "engine": engine, "form": form, "question": pq.question.question,
            "answered": outcome.answered, "answer": outcome.answer_text, "evidence": list(pq.question.evidence)[:3],
            "key_points": [list(p) for p in pq.question.key_points],
        }, ensure_ascii=False) + "\n")

    print(f"CPU: {cpu_flags()}", flush=True)
    results = run_splits(args.shared, read_split(HERE / "split.json"), HERE / "own_broad.jsonl", args.split, args.engines,
                         args.forms, args.languages, args.cache, limit=args.limit, dump=write if dump else None)
    if dump is not None:
        dump.close()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_flags(), "results": results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
