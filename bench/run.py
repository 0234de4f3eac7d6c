"""Run every benchmark, each in its own process, and print one table of their figures.

    .venv/bin/python bench/run.py                 # small defaults, a few minutes
    .venv/bin/python bench/run.py --full          # the README table: 1M chunks, more rounds
    .venv/bin/python bench/run.py --only latency,coldstart
"""

from __future__ import annotations

import common

QUICK = {
    "indexing": ["--corpus-only"],
    "latency": [],
    "scale": ["--sizes", "10000"],
    "incremental": ["--size", "10000"],
    "threads": ["--size", "10000", "--workers", "1,4"],
    "backends": [],
    "coldstart": [],
    "mcp_session": [],
    "ocr": [],
    "sourceview": [],
    "milvus_lite": ["--queries", "30", "--rounds", "1"],
    "ray_build": ["--runs", "1"],
}
FULL = {
    "indexing": ["--rounds", "2"],
    "latency": ["--queries", "150"],
    "scale": ["--sizes", "10000,100000,1000000", "--milvus"],  # add --baseline DIR for the code before, side by side
    "incremental": ["--size", "100000"],
    "threads": ["--size", "100000"],
    "backends": ["--pdfs"],
    "coldstart": ["--runs", "5"],
    "mcp_session": ["--runs", "5"],
    "ocr": ["--compare"],
    "sourceview": [],
    "milvus_lite": ["--queries", "60", "--rounds", "3"],
    "ray_build": ["--runs", "3"],
}


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--full", action="store_true", help="the sizes and rounds of the README table")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(QUICK)}")
    args = parser.parse_args(argv)
    plan = FULL if args.full else QUICK
    names = args.only.split(",") if args.only else list(plan)
    common.header("bench/run.py " + ("--full" if args.full else "(quick)"))
    rows = []
    for name in names:
        rows += common.child(f"{name}.py", *plan[name])
    print("\n== summary")
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
