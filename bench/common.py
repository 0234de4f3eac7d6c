"""What every benchmark shares: the machine header, timing statistics, tables, test data,
and the `--json` hand-off that bench/run.py collects."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Nothing may reach a model hub; set before any Hugging Face import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = ROOT / "corpus"
ARAGOG = SHARED / "pdfs" / "aragog"
EVAL = SHARED / "eval"

Row = dict  # {"bench", "metric", "value", "unit", "target", "met"}


def quiet() -> None:
    """Library chatter (sequence-length warnings, deprecations) would bury the figures."""
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("transformers", "sentence_transformers", "bm25s", "culture_rag"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with_transformers = "transformers" in sys.modules or _importable("transformers")
    if with_transformers:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor() or "?",
    )
    flags = Path("/proc/cpuinfo").read_text()
    isa = "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    libs = " ".join(
        f"{n}={_version(p)}"
        for n, p in (
            ("torch", "torch"),
            ("faiss", "faiss-cpu"),
            ("st", "sentence-transformers"),
            ("bm25s", "bm25s"),
            ("ort", "onnxruntime"),
        )
    )
    return f"machine: {cpu} ({isa}), {os.cpu_count()} cores, python {platform.python_version()}, {libs}, load avg {load}"


def header(title: str) -> None:
    print(f"== {title}\n{machine()}", flush=True)


def args_parser(doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--json", type=Path, help="also write the result rows here (bench/run.py reads them)")
    return parser


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latencies(fn: Callable[[object], object], inputs: Iterable[object]) -> list[float]:
    out = []
    for item in inputs:
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


@contextlib.contextmanager
def stage_timers(targets: list[tuple[object, str]], totals: dict[str, float]):
    """Add up the time spent in each `owner.name` while the block runs (profiling by wrapping
    the functions the code under test calls; everything is restored afterwards)."""
    originals = [(owner, name, getattr(owner, name), vars(owner).get(name)) for owner, name in targets]

    def timer(name, fn):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

        return wrapped

    for owner, name, fn, _ in originals:
        setattr(owner, name, timer(f"{_short(owner)}.{name}", fn))
    try:
        yield
    finally:
        for owner, name, _, raw in originals:
            if raw is not None:
                setattr(owner, name, raw)  # the descriptor itself, so a classmethod stays one
            else:
                delattr(owner, name)  # it was inherited from the class


def _short(owner: object) -> str:
    name = getattr(owner, "__name__", None) or type(owner).__name__
    return name.rsplit(".", 1)[-1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def row(bench: str, metric: str, value: float, unit: str, target: str = "", met: bool | None = None) -> Row:
    return {"bench": bench, "metric": metric, "value": value, "unit": unit, "target": target, "met": met}


def verdict(met: bool | None) -> str:
    return "" if met is None else "yes" if met else "NO"


def print_table(rows: list[Row], columns: tuple[str, ...] = ("bench", "metric", "value", "unit", "target", "met")) -> None:
    cells = [[c for c in columns]] + [
        [verdict(r[c]) if c == "met" else _fmt(r.get(c, "")) for c in columns] for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def finish(rows: list[Row], json_path: Path | None, show: bool = True) -> None:
    if show:
        print_table(rows)
    if json_path:
        json_path.write_text(json.dumps(rows))


# --- data ----------------------------------------------------------------------------------


def copy_corpus(dest: Path, pdfs: bool = True) -> Path:
    """The shipped corpus (plus the five arXiv PDFs) copied, so a build never touches corpus/."""
    corpus = dest / "corpus"
    shutil.copytree(CORPUS, corpus, ignore=shutil.ignore_patterns(".*"))
    if pdfs:
        for pdf in sorted(ARAGOG.glob("*.pdf")):
            shutil.copy(pdf, corpus / pdf.name)
    return corpus


def eval_questions(name: str = "dev_seed") -> list[dict]:
    with open(EVAL / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def distinct_queries(n: int) -> list[str]:
    """`n` different question texts from the dev sets: different texts, so the assistant's
    query-vector cache never hides the embedding cost."""
    base = [q["question"] for name in ("dev_seed", "dev_aragog") for q in eval_questions(name)]
    prefixes = ("", "In the papers: ", "Briefly, ", "According to the authors, ", "Tell me: ", "Question: ")
    out = [f"{prefixes[(i // len(base)) % len(prefixes)]}{base[i % len(base)]}" for i in range(n)]
    if len(set(out)) < n:  # past every prefix, a counter keeps the texts distinct
        out = [f"{q} ({i})" for i, q in enumerate(out)]
    return out


def settings(index_dir: Path, corpus_dir: Path | None = None, **updates):
    from culture_rag import Settings

    fields = {"index_dir": index_dir, **({"corpus_dir": corpus_dir} if corpus_dir else {}), **updates}
    return Settings(**fields)


def build_index(workdir: Path, pdfs: bool = False, embedder=None, **updates):
    """An Assistant over a fresh index of the shipped corpus (plus the PDFs) in `workdir`;
    `updates` are Settings fields."""
    from culture_rag import Assistant

    corpus = copy_corpus(workdir, pdfs=pdfs)
    assistant = Assistant(settings(workdir / "index", corpus, **updates), embedder)
    assistant.build(corpus)
    return assistant


def cache_dir() -> Path:
    from culture_rag import Settings

    return Path(Settings().cache_dir) / "bench"


def real_index(pdfs: bool = True):
    """The shipped corpus plus the PDFs, indexed once and kept in the cache: a rebuild over
    unchanged files embeds nothing, so only the first run pays."""
    from culture_rag import Assistant

    work = cache_dir() / ("real-pdfs" if pdfs else "real")
    shutil.rmtree(work / "corpus", ignore_errors=True)
    corpus = copy_corpus(work, pdfs=pdfs)
    assistant = Assistant(settings(work / "index", corpus))
    assistant.build(corpus)
    return assistant


def child(script: str, *args: str, env: dict[str, str] | None = None) -> list[Row]:
    """Run a bench script (a name beside this file, or a path) in a fresh process (its own peak
    RSS and thread settings); its rows."""
    import subprocess
    import tempfile

    path = Path(script) if Path(script).is_absolute() else Path(__file__).with_name(script)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, str(path), *args, "--json", out.name], check=True, env=env)
        return json.loads(Path(out.name).read_text())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

