"""The ONNX Runtime encoders: questions on the fused fp32 graph, passages on the int8 one, each
text tokenized by the `tokenizers` library (no torch, no transformers)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from culture_rag.embed.onnx_export import export_passage_graph, export_query_graph
from culture_rag.embed.pooling import Pooled, SpanList, TokenVectors, pooled
from culture_rag.errors import ModelError


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one BERT layer after another: nothing to overlap
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def piece_tokenizer(model_dir: Path, max_seq_length: int | None):
    """The model's tokenizer from the `tokenizers` library: transformers would import torch.
    tokenizer.json pads and truncates to 128 pieces; both are reset here."""
    # Its batches would spread over every core, where the embedding workers already run: chunk
    # sizing in the reader thread then slowed indexing by about 1% (bench/indexing.py).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    if not (model_dir / "tokenizer.json").is_file():
        raise ModelError(f"{model_dir}: no tokenizer.json, which the ONNX backends need; set passage_backend=torch")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    if max_seq_length:
        tokenizer.enable_truncation(max_seq_length)
    else:
        tokenizer.no_truncation()
    return tokenizer


def max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256


class OnnxQueryEncoder:
    """Query vectors from ONNX Runtime: the model exported once (with torch) to a fused graph
    cached beside the other conversions. Same vectors as torch (cosine 1.0000, identical
    rankings on the dev sets: bench/backends.py), about half the latency, and a question never
    imports torch, so a cold `culture-rag ask` is quick."""

    def __init__(self, model_dir: Path, weights_sha256: str, cache_dir: Path, max_seq_length: int) -> None:
        # one question, one core: see torch_threads
        self.session = onnx_session(export_query_graph(model_dir, weights_sha256, cache_dir), threads=1)
        # no padding: tokenizer.json pads to 128 pieces, 7x the work for a short question
        self.tokenizer = piece_tokenizer(model_dir, max_seq_length)

    def encode(self, text: str) -> np.ndarray:
        return self.session.run(["sentence_embedding"], onnx_feed(self.tokenizer.encode(text)))[0][0].astype(np.float32)


def onnx_feed(encoding) -> dict[str, np.ndarray]:
    """The graph's inputs for one text, unpadded."""
    return {
        "input_ids": np.array([encoding.ids], np.int64),
        "attention_mask": np.array([encoding.attention_mask], np.int64),
        "token_type_ids": np.array([encoding.type_ids], np.int64),
    }


class OnnxPassageEncoder:
    """Passage vectors from the int8 graph in ONNX Runtime: about 4x torch's throughput here,
    chunk vectors at cosine >= 0.98 to torch's, the same recall@5 and source_hit@5 on the dev sets. The
    graph returns token embeddings, so the sentence vectors are pooled from the same pass exactly
    as on the torch path (span_vectors).

    One text per run: activations are quantized with one scale per run, so in a batch a text's
    vector would move slightly (cosine ~0.995) with its neighbours, and a paper added later would
    get other vectors than a rebuild gives it. Alone it is as fast (bench/backends.py).

    Runs go one per core, each on one thread, from `workers` threads sharing the session (ONNX
    Runtime allows concurrent runs): 10% more texts per second than one run on every core, whose
    threads meet and spin-wait at every operator, and the vectors are bit-identical."""

    def __init__(self, model_dir: Path, weights_sha256: str, cache_dir: Path, workers: int) -> None:
        self.session = onnx_session(export_passage_graph(model_dir, weights_sha256, cache_dir), threads=1)
        self.tokenizer = piece_tokenizer(model_dir, max_seq_length(model_dir))
        self.workers = max(1, workers)

    def encode(self, texts: list[str]) -> list[TokenVectors]:
        return self._map(self._run, texts)

    def encode_pooled(self, texts: list[str], spans: list[SpanList]) -> list[Pooled]:
        """Each text's vector and its spans' vectors, pooled by the worker that ran the text
        while the other runs, instead of afterwards while both cores wait (3% of indexing)."""
        return self._map(lambda i: pooled(self._run(texts[i]), spans[i]), range(len(texts)))

    def _map(self, fn: Callable, items) -> list:
        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="culture-rag-embed") as pool:
            return list(pool.map(fn, items))

    def _run(self, text: str) -> TokenVectors:
        # Tokenized by the worker, not in one batch beforehand while both cores wait.
        encoding = self.tokenizer.encode(text)
        tokens, vector = self.session.run(["token_embeddings", "sentence_embedding"], onnx_feed(encoding))
        real = ~np.asarray(encoding.special_tokens_mask, dtype=bool)
        offsets = np.asarray(encoding.offsets).reshape(-1, 2)
        return TokenVectors(vector[0].astype(np.float32), tokens[0].astype(np.float32), offsets, real)
