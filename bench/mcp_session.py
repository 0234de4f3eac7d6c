"""MCP: a real stdio client session against `culture-rag mcp` on the shipped corpus (each run
a new server process): start to initialized, the first `ask`, and warm `ask` calls."""

from __future__ import annotations

import sys
import time

import anyio
import common
from common import ms, p50, row


async def session(index, questions: list[str]) -> tuple[float, float, list[float]]:
    from mcp import StdioServerParameters
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    server = StdioServerParameters(
        command=sys.executable, args=["-m", "culture_rag.serve.cli", "mcp", "--index", str(index)], env={"HF_HUB_OFFLINE": "1"}
    )
    start = time.perf_counter()
    async with stdio_client(server) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        ready = time.perf_counter()
        await client.call_tool("ask", {"question": questions[0]})
        first = time.perf_counter() - ready
        warm = []
        for question in questions[1:]:
            t = time.perf_counter()
            await client.call_tool("ask", {"question": question})
            warm.append(time.perf_counter() - t)
    return ready - start, first, warm


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="server processes (median)")
    parser.add_argument("--questions", type=int, default=10, help="asks per session")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("MCP: stdio session against culture-rag mcp")
    index = common.real_index(pdfs=False).index_dir
    questions = iter(common.distinct_queries(args.runs * args.questions))
    starts, firsts, warm = [], [], []
    for _ in range(args.runs):
        s, f, w = anyio.run(session, index, [next(questions) for _ in range(args.questions)])
        starts.append(s)
        firsts.append(f)
        warm += w
    rows = [
        row("mcp", "process start to initialized", round(p50(starts), 2), "s"),
        row("mcp", "first ask (model warming)", round(p50(firsts), 2), "s"),
        row("mcp", "warm ask, extractive", round(ms(p50(warm)), 1), "ms"),
    ]
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
