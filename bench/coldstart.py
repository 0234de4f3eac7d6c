"""Cold start: wall time from process start to the first answer of `culture-rag search`,
`culture-rag ask` and the web app (`culture-rag serve`, asked through its HTTP API) on the
shipped corpus (each run a new process and a new question), with the import and model-load
parts timed apart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import common
from common import p50, row

ASK_TARGET_S = 6.0
CLI = Path(sys.executable).with_name("culture-rag")


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def first_web_answer(index: Path, question: str, port: int) -> float:
    """Seconds from starting `culture-rag serve` to the first answer through its HTTP API."""
    import urllib.request

    from gradio_client import Client  # imported before the clock starts

    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    server = subprocess.Popen(
        [str(CLI), "serve", "--index", str(index), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"culture-rag serve exited with {server.returncode}")
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        Client(url, verbose=False).predict(question=question, api_name="/ask")
        return time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="processes per command (median)")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("cold start: new process to first answer")
    index = common.real_index(pdfs=False).index_dir
    questions = iter(common.distinct_queries(3 * args.runs))
    model = "from culture_rag import Settings; from culture_rag.embed.embedder import SentenceTransformerEmbedder as E; E(Settings())._model"
    onnx = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import backends; from culture_rag import Settings; "
        "backends.onnx_embedder(Settings(), 'onnx-int8', 1, queries_only=True).embed_query('a question')"
    )
    parts = {
        "python + import culture_rag.serve.cli": python("import culture_rag.serve.cli"),
        "python + Assistant.load (index, no model)": python(f"from culture_rag import Assistant; Assistant.load({str(index)!r})"),
        "python + import sentence_transformers": python("import sentence_transformers"),
        "python + load the torch embedding model": python(model),
        "python + ONNX int8 query vector (no torch)": python(onnx),
    }
    rows = [row("cold start", name, round(p50([wall(cmd) for _ in range(args.runs)]), 2), "s") for name, cmd in parts.items()]
    for command in ("search", "ask"):
        samples = [wall([str(CLI), command, next(questions), "--index", str(index)]) for _ in range(args.runs)]
        target = f"<= {ASK_TARGET_S} s" if command == "ask" else ""
        met = p50(samples) <= ASK_TARGET_S if command == "ask" else None
        rows.append(row("cold start", f"culture-rag {command}", round(p50(samples), 2), "s", target, met))
    web = [first_web_answer(index, next(questions), common.free_port()) for _ in range(args.runs)]
    rows.append(row("cold start", "web app: `culture-rag serve` to first answer over HTTP", round(p50(web), 2), "s"))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
