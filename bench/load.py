"""Load test of the web app: N concurrent gradio_client users asking extractive questions.

    .venv/bin/python bench/load.py                       # 20, 40, 100 users + a rebuild under load
    .venv/bin/python bench/load.py --users 20 --thread-sweep
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860/ --users 20 40   # an app already running

Without --url the script starts `culture-rag serve` itself on a free loopback port, over an
index built from a temporary copy of corpus/ (the real packaged model), and stops it at the end.

Each user is one gradio_client session that asks `--requests` questions back to back (no think
time: the worst case for a given number of users), or with `--pause S` waits 0.5-1.5 S seconds
after each answer, as a reader does. A request that waits longer than
`--timeout` seconds counts as a hang. A refused request ("queue is full, try again") counts as
busy; the user backs off briefly and goes on.

Rebuild under load (own server only): while 20 users ask, one more client removes a paper and
adds it back through the app's API. Extractive answers are deterministic for a given index, so
every answer given during the rebuild must equal, passage for passage, the answer of one
generation: before the removal, between removal and re-adding, or after. Anything else would
mix two generations. Requests lost to errors or refusals during the rebuild are counted too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # gradio_client would report each client otherwise

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "dev_seed.jsonl"
FALLBACK_QUESTIONS = [
    "What strengths does Belarus's cultural industry have?",
    "What was the export value of Chinese media in 2020 and where did it go?",
    "What is the cultural industry described as the material carrier of?",
    "What relationship did China aim to strengthen by proposing the Belt and Road Initiative?",
]
REBUILD_PAPER = "shang-liu-international-development-of-cultural-industry-in-the-belt-and-road-initiative.md"


def questions() -> list[str]:
    if EVAL.is_file():
        return [json.loads(line)["question"] for line in EVAL.read_text().splitlines() if line.strip()]
    return FALLBACK_QUESTIONS


# --- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`culture-rag serve` in a child process on loopback; builds its index on first start."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"server-{self.port}.log"

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "CULTURE_RAG_CORPUS_DIR": str(self.workdir / "corpus"),
            "CULTURE_RAG_CACHE_DIR": str(self.workdir / "cache"),
            "GRADIO_TEMP_DIR": str(self.workdir / "uploads"),
            **self.env,
        }
        cmd = [sys.executable, "-c", "from culture_rag.serve.cli import main; main()", "serve",
               "--index", str(self.workdir / "index"), "--port", str(self.port)]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.__exit__()
        raise SystemExit("the server did not start within 300 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- users -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # ok, busy, error, hang
    seconds: float
    question: str
    signature: tuple | None = None  # (passage chunk ids, answer text) of an ok answer
    detail: str = ""
    started: float = 0.0  # wall clock, to measure the run across processes
    search_ms: float | None = None  # the server's own timing of retrieval (embedding included)


def signature(answer: dict) -> tuple:
    """What identifies an answer: its passages in order and its text. Also checks each
    citation's quote against its passage, which a mixed-up index would break."""
    passages = {p["chunk_id"]: p for p in answer["passages"]}
    for c in answer["citations"]:
        a, b = c["start"] - c["passage_start"], c["end"] - c["passage_start"]
        if c["chunk_id"] not in passages or c["passage"][a:b] != c["quote"]:
            raise ValueError(f"citation [{c['n']}] does not match its passage")
    return tuple(p["chunk_id"] for p in answer["passages"]), answer["text"]


def ask(client, question: str, timeout: float) -> Outcome:
    from gradio_client.utils import QueueError

    started, start = time.time(), time.perf_counter()
    job = client.submit(question=question, mode="extractive", api_name="/ask")
    try:
        answer = job.result(timeout=timeout)
        return Outcome("ok", time.perf_counter() - start, question, signature(answer), started=started,
                       search_ms=answer["timings"]["search_ms"])
    except QueueError as exc:
        return Outcome("busy", time.perf_counter() - start, question, detail=str(exc), started=started)
    except TimeoutError:
        job.cancel()
        return Outcome("hang", time.perf_counter() - start, question, detail=f"no answer within {timeout:.0f} s",
                       started=started)
    except Exception as exc:  # anything else the app or the transport raised is an error to report
        return Outcome("error", time.perf_counter() - start, question, detail=f"{type(exc).__name__}: {exc}"[:300],
                       started=started)


def make_clients(url: str, n: int) -> list:
    from gradio_client import Client

    # Loopback HTTP has no TLS; without ssl_verify=False each request would still load the CA
    # bundle (about 45 ms of CPU in the client), and on 2 shared cores that would be measured
    # as server latency.
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: Client(url, verbose=False, download_files=False, ssl_verify=False), range(n)))


@dataclass(frozen=True)
class Plan:
    url: str
    questions: list[str]
    requests: int  # per user; the stop event may end the run sooner
    timeout: float
    distinct: bool = True  # a distinct tail per request, so the query-vector cache cannot help
    seed: int = 0
    pause: float = 0.0  # mean seconds a user waits after an answer (0: back to back)


def run_users(plan: Plan, first: int, n: int, barrier, stop, results) -> None:
    """One worker process: n users (threads, one gradio_client session each), started together
    with the other processes' users at the barrier."""
    clients = make_clients(plan.url, n)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def user(i: int, client) -> None:
        rng = random.Random(plan.seed * 1000 + i)
        barrier.wait()
        for k in range(plan.requests):
            if stop.is_set():
                return
            question = rng.choice(plan.questions)
            outcome = ask(client, f"{question} (user {i}, question {k})" if plan.distinct else question, plan.timeout)
            with lock:
                outcomes.append(outcome)
            if outcome.kind == "busy":
                time.sleep(0.2 + rng.random() * 0.3)
            elif plan.pause:
                time.sleep(plan.pause * (0.5 + rng.random()))

    threads = [threading.Thread(target=user, args=(first + j, c), daemon=True) for j, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    results.put(outcomes)


class Users:
    """N users spread over worker processes (at most 25 per process): a single Python process
    with hundreds of client threads would queue on its own GIL, and that wait would be
    measured as the server's."""

    def __init__(self, plan: Plan, users: int) -> None:
        self.plan, self.users = plan, users
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(users + 1)
        self.stop = ctx.Event()
        self.results = ctx.Queue()
        sizes = [len(part) for part in _split(range(users), max(1, -(-users // 25)))]
        firsts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.procs = [
            ctx.Process(target=run_users, args=(plan, f, n, self.barrier, self.stop, self.results), daemon=True)
            for f, n in zip(firsts, sizes)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()
        self.barrier.wait(timeout=300)  # every client connected; from here on it is measured

    def finish(self, timeout: float = 900) -> list[Outcome]:
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + timeout
        for _ in self.procs:
            outcomes += self.results.get(timeout=max(1.0, deadline - time.monotonic()))
        for p in self.procs:
            p.join(10)
        return outcomes


def _split(seq, parts: int) -> list:
    seq = list(seq)
    return [seq[i::parts] for i in range(parts)]


def wall_time(outcomes: list[Outcome]) -> float:
    if not outcomes:
        return 0.0
    return max(o.started + o.seconds for o in outcomes) - min(o.started for o in outcomes)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summarize(users: int, outcomes: list[Outcome]) -> dict:
    wall = wall_time(outcomes)
    ok = [o.seconds for o in outcomes if o.kind == "ok"]
    busy = [o.seconds for o in outcomes if o.kind == "busy"]
    return {
        "users": users,
        "requests": len(outcomes),
        "ok": len(ok),
        "busy": len(busy),
        "errors": sum(o.kind == "error" for o in outcomes),
        "hangs": sum(o.kind == "hang" for o in outcomes),
        "p50_s": percentile(ok, 50),
        "p95_s": percentile(ok, 95),
        "max_s": max(ok, default=float("nan")),
        "busy_p95_s": percentile(busy, 95),
        "search_p50_ms": percentile([o.search_ms for o in outcomes if o.search_ms is not None], 50),
        "search_p95_ms": percentile([o.search_ms for o in outcomes if o.search_ms is not None], 95),
        "answers_per_s": len(ok) / wall if wall else 0.0,
        "load_avg_1m": os.getloadavg()[0],
        "examples": sorted({o.detail for o in outcomes if o.kind in ("error", "hang")})[:3],
    }


def run_level(url: str, users: int, requests: int, timeout: float, qs: list[str], pause: float = 0.0) -> dict:
    from gradio_client import Client

    warm = Client(url, verbose=False, download_files=False, ssl_verify=False)
    for q in qs[:2]:  # the first answers after start-up are not what users see later
        ask(warm, q, timeout)
    warm.close()
    run = Users(Plan(url, qs, requests, timeout, seed=users, pause=pause), users)
    run.start()
    return summarize(users, run.finish())


# --- rebuild under load -------------------------------------------------------------------------------


def rebuild_under_load(server: Server, users: int, timeout: float, qs: list[str]) -> dict:
    from gradio_client import Client, handle_file

    admin = Client(server.url, verbose=False, download_files=False, ssl_verify=False)
    paper_id = next(p["paper_id"] for p in admin.predict(api_name="/papers")["papers"] if p["source"] == REBUILD_PAPER)
    keep = server.workdir / "rebuild-copy" / REBUILD_PAPER
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(server.workdir / "corpus" / REBUILD_PAPER, keep)

    def answers() -> dict[str, tuple]:
        return {q: signature(admin.predict(question=q, mode="extractive", api_name="/ask")) for q in qs}

    before = answers()
    run = Users(Plan(server.url, qs, 10_000, timeout, distinct=False, seed=7), users)
    result: dict = {}
    run.start()
    try:
        time.sleep(1.0)
        t0 = time.perf_counter()
        admin.predict(paper_id=paper_id, api_name="/remove")
        result["removed_s"] = time.perf_counter() - t0
        result["between"] = answers()  # the index without the paper, asked while the users go on
        t0 = time.perf_counter()
        report = admin.predict(files=[handle_file(str(keep))], password="", api_name="/add")[3]
        result["added_s"] = time.perf_counter() - t0
        result["add_status"] = [o["status"] for o in report["outcomes"]]
        result["after"] = answers()
        time.sleep(1.0)
    finally:
        run.stop.set()
        outcomes = run.finish()
        admin.close()
    generations = [before, result.get("between", {}), result.get("after", {})]
    mixed = [o for o in outcomes if o.kind == "ok" and not any(g.get(o.question) == o.signature for g in generations)]
    changed = sum(before[q] != result.get("between", {}).get(q) for q in qs)
    # The re-added paper gives the same answers as before its removal, so two index states remain.
    seen = {"with the paper": 0, "without the paper": 0, "unchanged by the rebuild": 0}
    for o in outcomes:
        if o.kind == "ok":
            with_paper = o.signature in (before.get(o.question), result.get("after", {}).get(o.question))
            without = o.signature == result.get("between", {}).get(o.question)
            if with_paper and without:
                seen["unchanged by the rebuild"] += 1
            elif with_paper or without:
                seen["with the paper" if with_paper else "without the paper"] += 1
    summary = summarize(users, outcomes)
    summary.update(
        rebuild="remove + re-add one paper",
        remove_s=result.get("removed_s"),
        add_s=result.get("added_s"),
        add_status=result.get("add_status"),
        questions_whose_answer_changed=f"{changed}/{len(qs)}",
        answers_matching_generation=seen,
        mixed_generation_answers=len(mixed),
        lost_queries=summary["errors"] + summary["hangs"] + summary["busy"],
    )
    return summary


# --- reporting ---------------------------------------------------------------------------------------


COLUMNS = ["users", "requests", "ok", "busy", "errors", "hangs", "p50 s", "p95 s", "max s", "busy p95 s",
           "answers/s", "search p50/p95 ms", "load avg"]


def table(rows: list[dict], label: str = "") -> str:
    columns = ([label] if label else []) + COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r["label"]] if label else []
        cells += [r["users"], r["requests"], r["ok"], r["busy"], r["errors"], r["hangs"]]
        cells += [f"{r[k]:.3f}" for k in ("p50_s", "p95_s", "max_s", "busy_p95_s")]
        cells += [f"{r['answers_per_s']:.1f}", f"{r['search_p50_ms']:.0f}/{r['search_p95_ms']:.0f}",
                  f"{r['load_avg_1m']:.1f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def threads_env(torch: int, faiss: int, blas: int) -> dict[str, str]:
    return {"CULTURE_RAG_TORCH_THREADS": str(torch), "CULTURE_RAG_FAISS_THREADS": str(faiss),
            "OPENBLAS_NUM_THREADS": str(blas)}


THREAD_CONFIGS = [
    ("torch 1, faiss 1, BLAS 1 (default)", threads_env(1, 1, 1)),
    ("torch 2, faiss 1, BLAS 1", threads_env(2, 1, 1)),
    ("torch 1, faiss 2, BLAS 2", threads_env(1, 2, 2)),
    ("torch 2, faiss 2, BLAS 2", threads_env(2, 2, 2)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an app already running (loopback); default: start one")
    parser.add_argument("--users", type=int, nargs="+", default=[20, 40, 100])
    parser.add_argument("--requests", type=int, default=10, help="questions per user per level")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds after which a request counts as a hang")
    parser.add_argument("--pause", type=float, default=0.0, help="mean seconds each user waits after an answer (0: back to back)")
    parser.add_argument("--no-rebuild", action="store_true", help="skip the rebuild-under-load check")
    parser.add_argument("--thread-sweep", action="store_true",
                        help="also compare torch/faiss/BLAS thread counts (a server per setting, at each --users)")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")
    qs = questions()
    figures: dict = {"command": " ".join(["bench/load.py", *sys.argv[1:]]), "cores": os.cpu_count()}

    if args.url:
        figures["levels"] = [run_level(args.url, n, args.requests, args.timeout, qs, args.pause) for n in args.users]
        print(table(figures["levels"]))
    else:
        with tempfile.TemporaryDirectory(prefix="culture-rag-load-") as tmp:
            workdir = Path(tmp)
            shutil.copytree(ROOT / "corpus", workdir / "corpus")
            with Server(workdir) as server:
                figures["levels"] = []
                for n in args.users:
                    figures["levels"].append(run_level(server.url, n, args.requests, args.timeout, qs, args.pause))
                    print(table(figures["levels"][-1:]), flush=True)
                if not args.no_rebuild:
                    figures["rebuild"] = rebuild_under_load(server, 20, args.timeout, qs)
                    print(json.dumps(figures["rebuild"], indent=1), flush=True)
            if args.thread_sweep:
                figures["threads"] = []
                for label, env in THREAD_CONFIGS:
                    with Server(workdir, env) as server:
                        for n in args.users:
                            row = run_level(server.url, n, args.requests, args.timeout, qs, args.pause)
                            figures["threads"].append({"label": label, **row})
                            print(table(figures["threads"][-1:], "threads"), flush=True)
    print("\n" + table(figures["levels"]))
    if "threads" in figures:
        print("\n" + table(figures["threads"], "threads"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
