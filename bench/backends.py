"""Embedding backends: sentence-transformers on torch fp32 against ONNX Runtime fp32 (fused
graph) and int8 (dynamic, per-channel), both exported locally from the packaged model and
cached under Settings.cache_dir. Per backend: query latency (one text), batch throughput,
recall@5 and mrr on dev_seed over corpus/, top-10 overlap with torch, and the same recall
when only the queries use the backend against passages embedded by torch."""

from __future__ import annotations

import json
import tempfile
import time
from functools import cached_property, partial
from pathlib import Path

import common
import numpy as np
from common import ms, p50, row

from culture_rag.embed.onnx_export import export_onnx, export_passage_graph, fused_graph, onnx_cache

BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
# The engine's defaults embed with its own ONNX encoders; here every backend goes through the
# embedder's model, which each backend swaps, and the reference is torch on both sides.
TORCH = {"passage_backend": "torch", "query_backend": "torch"}


def export(model_dir: Path, weights_sha: str, cache_dir: Path) -> dict[str, Path]:
    """Both graphs output token embeddings and the pooled vector. The int8 one is the graph that
    passage_backend=onnx-int8 uses; the fp32 one is fused like the query graph. Exported once
    per weights file; later runs load the cached graphs."""
    fp32 = export_onnx(model_dir, onnx_cache(cache_dir, weights_sha) / "passage-fp32.onnx", True, fused_graph)
    return {"onnx-fp32": fp32, "onnx-int8": export_passage_graph(model_dir, weights_sha, cache_dir)}


class OnnxModel:
    """The part of SentenceTransformer that SentenceTransformerEmbedder calls, run by ONNX
    Runtime, so the embedder's chunk and sentence ("late chunking") pooling is reused as is.
    Encoding uses the `tokenizers` library directly: importing transformers (and torch) would
    cost seconds of cold start that a query never needs."""

    def __init__(self, path: Path, model_dir: Path, max_seq_length: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.model_dir = model_dir
        self.max_seq_length = max_seq_length
        self._fast = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._fast.enable_truncation(max_seq_length)
        self._fast.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch

    @cached_property
    def tokenizer(self):
        """The Hugging Face tokenizer the embedder's count/windows/pooling use (indexing only)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)

    def encode(self, texts, batch_size: int = 32, output_value: str | None = "sentence_embedding", **_):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as ST does: less padding
        pooled, tokens = [None] * len(texts), [None] * len(texts)
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            encoded = self._fast.encode_batch([texts[i] for i in idx])
            feed = {
                "input_ids": np.array([e.ids for e in encoded], np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], np.int64),
            }
            token_out, pooled_out = self.session.run(None, feed)
            lengths = feed["attention_mask"].sum(1)
            for j, i in enumerate(idx):
                pooled[i], tokens[i] = pooled_out[j], token_out[j, : lengths[j]]
        if output_value is None:  # the embedder's pooling expects torch tensors
            import torch

            return [{"sentence_embedding": torch.from_numpy(p), "token_embeddings": torch.from_numpy(t)} for p, t in zip(pooled, tokens)]
        return np.stack(pooled) if texts else np.empty((0, 0), np.float32)


def onnx_embedder(settings, backend: str, threads: int, queries_only: bool = False):
    """A SentenceTransformerEmbedder whose model runs in ONNX Runtime. With `queries_only` it
    keeps torch's fingerprint, so it can query an index whose passages torch embedded."""
    from culture_rag.embed.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(settings)
    graphs = export(embedder.model_dir, embedder.weights_sha256, settings.cache_dir)
    max_seq = json.loads((embedder.model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    embedder.__dict__["_model"] = OnnxModel(graphs[backend], embedder.model_dir, max_seq, threads)
    # Questions and passages both through the swapped model: the engine's own ONNX encoders
    # (query_backend, passage_backend) would otherwise answer for it.
    embedder.query_backend = embedder.passage_backend = "torch"
    if not queries_only:
        embedder.fingerprint = f"{embedder.fingerprint}+{backend}"
    return embedder


def embedder_for(settings, backend: str, threads: int, queries_only: bool = False):
    from culture_rag.embed.embedder import SentenceTransformerEmbedder

    if backend == "torch-fp32":
        return SentenceTransformerEmbedder(settings)
    return onnx_embedder(settings, backend, threads, queries_only)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# --- quality -------------------------------------------------------------------------------


def ranked(assistant, questions) -> dict[str, list]:
    return {q.id: assistant.search(q.question, k=10) for q in questions}


def quality(results: dict[str, list], questions) -> dict[str, float]:
    """FORMAT.md's recall@5 and mrr (questions with evidence) and source_hit@5 (with sources)."""
    from culture_rag.evaluate.scoring import contains_evidence

    out = {}
    with_evidence = [q for q in questions if q.answerable and q.evidence]
    if with_evidence:
        ranks = [
            next((i for i, h in enumerate(results[q.id], 1) if contains_evidence(h.chunk.text, list(q.evidence))), None)
            for q in with_evidence
        ]
        out["recall@5"] = sum(1 for r in ranks if r and r <= 5) / len(ranks)
        out["mrr"] = sum(1 / r for r in ranks if r) / len(ranks)
    with_sources = [q for q in questions if q.sources]
    if with_sources:
        hit = [bool({h.paper.source for h in results[q.id][:5]} & set(q.sources)) for q in with_sources]
        out["source_hit@5"] = sum(hit) / len(hit)
    return out


def overlap(a: dict[str, list], b: dict[str, list]) -> float:
    shared = [len({h.chunk.chunk_id for h in a[q]} & {h.chunk.chunk_id for h in b[q]}) / max(1, len(a[q])) for q in a]
    return float(np.mean(shared))


def shown(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


# --- benchmark -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--queries", type=int, default=40, help="distinct questions for query latency")
    parser.add_argument("--rounds", type=int, default=3, help="batch-throughput rounds (median)")
    parser.add_argument("--pdfs", action="store_true", help="add the aragog PDFs: throughput texts and dev_aragog source_hit@5")
    args = parser.parse_args(argv)
    common.quiet()
    common.header("backends: torch fp32 vs ONNX Runtime fp32 / int8")
    from culture_rag import Assistant
    from culture_rag.evaluate.scoring import read_questions

    sets = {"dev_seed": False, **({"dev_aragog": True} if args.pdfs else {})}  # name -> needs the PDFs
    questions = {name: read_questions(common.EVAL / f"{name}.jsonl") for name in sets}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch_threads(1)
        torch_indexes = {name: common.build_index(work / f"torch-{name}", pdfs=pdfs, **TORCH) for name, pdfs in sets.items()}
        texts = [c.embed_text for c in torch_indexes[list(sets)[-1]].snapshot.chunks]
        settings = torch_indexes["dev_seed"].settings
        print(f"throughput texts: {len(texts)} chunks", flush=True)
        reference = {name: ranked(a, questions[name]) for name, a in torch_indexes.items()}
        seed_texts = [q.question for q in questions["dev_seed"]]
        reference_queries = torch_indexes["dev_seed"].embedder.embed_texts(seed_texts)
        queries = common.distinct_queries(args.queries * len(BACKENDS))
        for n, backend in enumerate(BACKENDS):
            query_embedder = embedder_for(settings, backend, threads=1)
            batch_embedder = embedder_for(settings, backend, threads=2)
            torch_threads(1)
            query_embedder.embed_query("warm up")
            query_ms = p50(common.latencies(query_embedder.embed_query, queries[n * args.queries : (n + 1) * args.queries]))
            torch_threads(2)
            batch_embedder.embed_texts(texts[:8])
            seconds = p50([common.timed(partial(batch_embedder.embed_texts, texts)) for _ in range(args.rounds)])
            torch_threads(1)
            cosine = (query_embedder.embed_texts(seed_texts) * reference_queries).sum(1)
            rows += [
                row(backend, "query embedding p50 (1 thread)", ms(query_ms), "ms"),
                row(backend, "batch throughput (2 threads)", round(len(texts) / seconds, 1), "chunks/s"),
                row(backend, "query cosine to torch (min)", round(float(cosine.min()), 4), ""),
            ]
            for name, pdfs in sets.items():
                base = torch_indexes[name]
                own = base if not n else common.build_index(work / f"{backend}-{name}", pdfs, embedder_for(settings, backend, 1), **TORCH)
                own_results = ranked(own, questions[name])
                mine = quality(own_results, questions[name])
                cross = Assistant.load(base.index_dir, base.settings, embedder_for(settings, backend, 1, queries_only=True))
                crossed = quality(ranked(cross, questions[name]), questions[name])
                ref = quality(reference[name], questions[name])
                holds = all(mine[k] >= ref[k] - 0.01 and crossed[k] >= ref[k] - 0.01 for k in ref if k != "mrr")
                rows += [
                    row(backend, f"{name}: own index", shown(mine), "", "recall within 0.01 of torch", holds),
                    row(backend, f"{name}: queries on torch passages", shown(crossed), ""),
                    row(backend, f"{name}: top-10 overlap with torch", round(overlap(own_results, reference[name]), 3), "share"),
                ]
            print(f"{backend}: done at {time.strftime('%H:%M:%S')}", flush=True)
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
