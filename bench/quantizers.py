"""int8 quantizer settings across CPU kernel families. ONNX Runtime picks its int8 GEMM kernel
from CPUID: with AVX512-VNNI (or AVX-VNNI) u8 x s8 products are summed exactly in int32; on
AVX2 (and AVX-512 without VNNI) pairs are summed in int16 with saturation (vpmaddubsw), which
7-bit weights (reduce_range) or u8 weights (U8U8, widened to int16 first) avoid.

Three steps, so the middle one can run under QEMU user-mode emulation with a CPU model that lacks
AVX-512 and VNNI (timings there mean nothing, vectors do):

    python bench/quantizers.py prepare DIR     # native: export every variant, chunk texts, torch vectors
    qemu-x86_64 -cpu Haswell .venv/bin/python bench/quantizers.py embed DIR --tag haswell
    python bench/quantizers.py embed DIR --tag native
    python bench/quantizers.py report DIR      # closeness to torch and between kernels; retrieval

`embed` imports only ONNX Runtime and tokenizers. `report` replays each tag's vectors through a
real Assistant build (queries from the engine's fp32 graph), so retrieval is the engine's own."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from functools import partial
from pathlib import Path

import numpy as np

VARIANTS = {
    # name: quantize_dynamic keywords (weights; activations are always u8 in dynamic quantization)
    "s8": {"weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    "s8-rr": {"weight_type": "QInt8", "per_channel": True, "reduce_range": True},
    "u8": {"weight_type": "QUInt8", "per_channel": True, "reduce_range": False},
    "s8-tensor-rr": {"weight_type": "QInt8", "per_channel": False, "reduce_range": True},
}
SETS = {"dev_seed": False, "dev_aragog": True}  # eval set -> index the aragog PDFs too


def graph_path(out: Path, variant: str) -> Path:
    return out / f"passage-{variant}.onnx"


def quantize(options: dict, raw: Path, dest: Path, config) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(dest), **{**options, "weight_type": getattr(QuantType, options["weight_type"])})


def prepare(out: Path) -> None:
    import common

    from culture_rag.embed.onnx_export import export_onnx
    from culture_rag.ingest.chunking import sentence_spans_in_embed_text

    from culture_rag.embed.embedder import SentenceTransformerEmbedder

    out.mkdir(parents=True, exist_ok=True)
    embedder = SentenceTransformerEmbedder(common.settings(out / "unused", passage_backend="torch", query_backend="torch"))
    free_texts: list[str] = []  # what a build embeds besides passages (table rows): replayed too
    embed_texts = embedder.embed_texts
    embedder.embed_texts = lambda batch: (free_texts.extend(batch), embed_texts(batch))[1]
    reference = common.build_index(out / "torch-index", True, embedder, passage_backend="torch", query_backend="torch")
    for name, options in VARIANTS.items():
        export_onnx(embedder.model_dir, graph_path(out, name), True, partial(quantize, options))
    chunks = reference.snapshot.chunks
    texts = [c.embed_text for c in chunks]
    spans = [[list(s) for s in sentence_spans_in_embed_text(c)] for c in chunks]
    (out / "texts.json").write_text(json.dumps({"texts": texts, "spans": spans, "free": sorted(set(free_texts)), "model_dir": str(embedder.model_dir)}))
    vectors = embedder.embed_passages(texts, [[tuple(s) for s in x] for x in spans])
    free = embed_texts(sorted(set(free_texts))) if free_texts else np.empty((0, embedder.dimension), np.float32)
    np.savez(out / "torch.npz", chunks=vectors.chunks, sentences=vectors.sentences, free=free)
    print(f"{len(texts)} chunks, {len(vectors.sentences)} sentences; graphs in {out}")


def embed(out: Path, tag: str, variants: list[str], options: dict[str, str]) -> None:
    import onnxruntime as ort

    from culture_rag.embed.onnx import max_seq_length, onnx_feed, piece_tokenizer
    from culture_rag.embed.pooling import TokenVectors, pooled

    data = json.loads((out / "texts.json").read_text())
    model_dir = Path(data["model_dir"])
    tokenizer = piece_tokenizer(model_dir, max_seq_length(model_dir))
    for variant in variants:
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = 1
        for key, value in options.items():
            session_options.add_session_config_entry(key, value)
        session = ort.InferenceSession(str(graph_path(out, variant)), session_options, providers=["CPUExecutionProvider"])
        started, chunk_rows, sentence_rows, free_rows = time.perf_counter(), [], [], []
        for text, spans in zip(data["texts"], data["spans"]):
            encoding = tokenizer.encode(text)
            tokens, vector = session.run(["token_embeddings", "sentence_embedding"], onnx_feed(encoding))
            real = ~np.asarray(encoding.special_tokens_mask, dtype=bool)
            offsets = np.asarray(encoding.offsets).reshape(-1, 2)
            result = pooled(TokenVectors(vector[0].astype(np.float32), tokens[0].astype(np.float32), offsets, real), [tuple(s) for s in spans])
            chunk_rows.append(result.vector)
            sentence_rows.append(result.spans)
        for text in data["free"]:
            free_rows.append(session.run(["sentence_embedding"], onnx_feed(tokenizer.encode(text)))[0][0].astype(np.float32))
        suffix = "".join(f"+{k.rsplit('.', 1)[-1]}" for k in options)
        np.savez(out / f"{tag}-{variant}{suffix}.npz", chunks=np.stack(chunk_rows), sentences=np.concatenate(sentence_rows), free=np.array(free_rows, np.float32).reshape(-1, 384))
        print(f"{tag} {variant}{suffix}: {len(chunk_rows)} chunks in {time.perf_counter() - started:.0f} s", flush=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1)


def closeness(a: dict, b: dict, spans: list) -> dict[str, float]:
    chunk, sentence = cosines(a["chunks"], b["chunks"]), cosines(a["sentences"], b["sentences"])
    lengths = np.array([hi - lo for x in spans for lo, hi in x])
    short = sentence[lengths < np.percentile(lengths, 25)]
    return {
        "chunk min": float(chunk.min()),
        "chunk p50": float(np.median(chunk)),
        "sentence min": float(sentence.min()),
        "sentence p1": float(np.percentile(sentence, 1)),
        "sentence p50": float(np.median(sentence)),
        "short-sentence min": float(short.min()),
    }


class ReplayEmbedder:
    """The engine's embedder, whose passage and free-text vectors come from a stored run."""

    def __new__(cls, settings, texts: list[str], vectors: dict):
        from culture_rag.embed.embedder import PassageVectors, SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(settings)
        rows = {t: i for i, t in enumerate(texts)}
        free = {t: i for i, t in enumerate(vectors["free_texts"])}
        starts = np.cumsum([0] + [len(s) for s in vectors["spans"]])

        def embed_passages(batch, spans, progress=None):
            idx = [rows[t] for t in batch]
            sentences = [vectors["sentences"][starts[i] : starts[i + 1]] for i in idx]
            if progress:
                progress(len(batch))
            return PassageVectors(vectors["chunks"][idx], np.concatenate(sentences) if sentences else np.empty((0, 384), np.float32))

        def embed_texts(batch):
            return np.stack([vectors["free"][free[t]] if t in free else vectors["chunks"][rows[t]] for t in batch]).reshape(-1, 384)

        embedder.embed_passages = embed_passages
        embedder.embed_texts = embed_texts
        embedder.fingerprint += "+replay"
        return embedder


def retrieval(out: Path, name: str, vectors: dict, data: dict, questions) -> dict:
    import common
    from backends import quality, ranked

    pdfs = SETS[name]
    settings = common.settings(out / "unused", passage_backend="torch", query_backend="onnx")
    embedder = ReplayEmbedder(settings, data["texts"], {**vectors, "spans": data["spans"], "free_texts": data["free"]})
    assistant = common.build_index(out / "replay" / f"{name}-{time.monotonic_ns()}", pdfs, embedder, passage_backend="torch", query_backend="onnx")
    results = ranked(assistant, questions)
    return {"results": results, **quality(results, questions)}


def report(out: Path, args_json: bool) -> None:
    import common
    from backends import overlap

    from culture_rag.evaluate.scoring import read_questions

    common.quiet()
    data = json.loads((out / "texts.json").read_text())
    torch = dict(np.load(out / "torch.npz"))
    runs = {p.stem: dict(np.load(p)) for p in sorted(out.glob("*.npz")) if p.stem != "torch"}
    rows = []
    questions = {name: read_questions(common.EVAL / f"{name}.jsonl") for name in SETS}
    reference = {name: retrieval(out, name, torch, data, questions[name]) for name in SETS}
    for run, vectors in runs.items():
        for metric, value in closeness(vectors, torch, data["spans"]).items():
            rows.append(common.row(run, f"cosine to torch, {metric}", round(value, 4), ""))
        tag, variant = run.split("-", 1)
        native = runs.get(f"native-{variant}")
        if tag != "native" and native is not None:
            for metric, value in closeness(vectors, native, data["spans"]).items():
                rows.append(common.row(run, f"cosine to native (VNNI), {metric}", round(value, 6), ""))
        for name in SETS:
            mine = retrieval(out, name, vectors, data, questions[name])
            scores = {k: v for k, v in mine.items() if k != "results"}
            rows.append(common.row(run, f"{name}", ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), ""))
            rows.append(common.row(run, f"{name}: top-10 overlap with torch", round(overlap(mine["results"], reference[name]["results"]), 3), ""))
    for name in SETS:
        scores = {k: v for k, v in reference[name].items() if k != "results"}
        rows.append(common.row("torch", name, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), ""))
    common.finish(rows, args_json)


def passage_runners(out: Path, threads: int) -> dict:
    """name -> encode(texts), each the way the engine would run it: torch in batches on every core,
    ONNX Runtime one text per run from one worker per core (OnnxPassageEncoder), OpenVINO one
    text per request on every core (it reads the unfused fp32 ONNX graph itself)."""
    import common

    from culture_rag.embed.embedder import SentenceTransformerEmbedder
    from culture_rag.embed.onnx import OnnxPassageEncoder, max_seq_length, onnx_session, piece_tokenizer
    from culture_rag.embed.onnx_export import export_onnx, fused_graph

    torch_embedder = SentenceTransformerEmbedder(common.settings(out / "unused", passage_backend="torch", query_backend="torch"))
    model_dir = torch_embedder.model_dir
    graphs = {"onnx-fp32": export_onnx(model_dir, out / "passage-fp32.onnx", True, fused_graph)}
    graphs.update({f"int8 {v}": graph_path(out, v) for v in VARIANTS if v != "s8-tensor-rr"})
    runners = {"torch": torch_embedder.embed_texts}
    for name, path in graphs.items():
        encoder = OnnxPassageEncoder.__new__(OnnxPassageEncoder)
        encoder.session = onnx_session(path, threads=1)
        encoder.tokenizer = piece_tokenizer(model_dir, max_seq_length(model_dir))
        encoder.workers = threads
        runners[name] = encoder.encode
    with contextlib.suppress(ImportError):
        runners["openvino fp32"] = openvino_runner(out, model_dir, threads)
    return runners


def openvino_runner(out: Path, model_dir: Path, threads: int):
    import shutil

    import openvino

    from culture_rag.embed.onnx import max_seq_length, onnx_feed, piece_tokenizer
    from culture_rag.embed.onnx_export import export_onnx

    raw = export_onnx(model_dir, out / "passage-fp32-raw.onnx", True, lambda r, o, _: shutil.copy(r, o))
    compiled = openvino.Core().compile_model(str(raw), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    tokenizer = piece_tokenizer(model_dir, max_seq_length(model_dir))
    return lambda texts: [request.infer(onnx_feed(tokenizer.encode(t)))[compiled.outputs[1]] for t in texts]


def speed(out: Path, rounds: int, limit: int, json_path: Path | None) -> None:
    import os

    import common

    common.quiet()
    data = json.loads((out / "texts.json").read_text())
    texts = data["texts"][:limit]
    runners = passage_runners(out, os.cpu_count() or 1)
    for run in runners.values():
        run(texts[:4])  # sessions, kernels and pools warmed
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):  # interleaved, so that drifting load hits every backend alike
        for name, run in runners.items():
            seconds[name].append(common.timed(partial(run, texts)))
    from culture_rag.embed.quantize import int8_kernels

    pieces = float(np.mean([len(e.ids) for e in passage_pieces(data["model_dir"], texts)]))
    rows, torch_rate = [], len(texts) / common.p50(seconds["torch"])
    for name, times in seconds.items():
        rate = len(texts) / common.p50(times)
        rows.append(common.row(name, f"chunks/s ({len(texts)} chunks, {pieces:.0f} pieces, median of {rounds})", round(rate, 1), "chunks/s"))
        rows.append(common.row(name, "  scaled to 160 word pieces; x torch", f"{rate * pieces / 160:.1f}; {rate / torch_rate:.2f}x", ""))
    rows.append(common.row("machine", "int8 kernels; load average", f"{int8_kernels()}; {os.getloadavg()[0]:.2f}", ""))
    common.finish(rows, json_path)


def passage_pieces(model_dir: str, texts: list[str]):
    from culture_rag.embed.onnx import max_seq_length, piece_tokenizer

    tokenizer = piece_tokenizer(Path(model_dir), max_seq_length(Path(model_dir)))
    return tokenizer.encode_batch(texts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "embed", "report", "speed"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--tag", default="native", help="embed: the name of this CPU's run")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="embed: comma-separated")
    parser.add_argument("--option", action="append", default=[], help="embed: an ONNX Runtime session config entry key=value")
    parser.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds (medians)")
    parser.add_argument("--limit", type=int, default=240, help="speed: chunks per round")
    parser.add_argument("--json", type=Path, help="report: also write the rows here")
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.dir)
    elif args.step == "embed":
        embed(args.dir, args.tag, args.variants.split(","), dict(o.split("=", 1) for o in args.option))
    elif args.step == "speed":
        speed(args.dir, args.rounds, args.limit, args.json)
    else:
        report(args.dir, args.json)


if __name__ == "__main__":
    main()
