"""The model traced once with torch (plus mean pooling) into ONNX graphs cached per weights
file: a fused fp32 graph for questions, an int8 one (quantize.py) for passages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from culture_rag.embed.quantize import INT8_SCHEME, int8_graph
from culture_rag.files import replacing, temporary_sibling

log = logging.getLogger(__name__)

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
QUERY_GRAPH = "query-fp32.onnx"  # fused fp32, outputs the pooled vector
PASSAGE_GRAPH = f"passage-int8-{INT8_SCHEME}.onnx"  # outputs token embeddings and the pooled vector


def onnx_cache(cache_dir: Path, weights_sha256: str) -> Path:
    """Where the ONNX conversions of one weights file live; a new file means a new folder."""
    return Path(cache_dir) / "onnx" / weights_sha256[:16]


def fused_graph(raw: Path, out: Path, config) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size).save_model_to_file(str(out))


def export_onnx(model_dir: Path, final: Path, with_tokens: bool, finish: Callable[[Path, Path, object], None]) -> Path:
    """The model (plus mean pooling) traced once with torch, the only time torch is needed, then
    `finish`ed (fused or quantized) into `final` all or nothing (files.replacing), so a crash or
    a concurrent export never leaves a half-written graph. Later calls return the cache."""
    if final.is_file():
        return final
    started = time.perf_counter()
    log.info("exporting %s (once per weights file)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    raw = temporary_sibling(final.with_name(f"raw-{final.name}"))
    try:
        with replacing(final) as tmp:
            finish(raw, tmp, _trace(model_dir, raw, with_tokens))
    finally:
        raw.unlink(missing_ok=True)
    log.info("exported %s in %.1f s", final.name, time.perf_counter() - started)
    return final


def _trace(model_dir: Path, raw: Path, with_tokens: bool):
    import torch
    from transformers import AutoModel, AutoTokenizer

    # eager attention exports as plain ops that the optimizer fuses into one attention node
    bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    # Two lengths, so the sample has padding and the traced graph applies the attention mask.
    sample = tokenizer(["an example", "a longer example with padding"], padding=True, return_tensors="pt")
    outputs = ["token_embeddings", "sentence_embedding"] if with_tokens else ["sentence_embedding"]
    axes = {n: {0: "batch", 1: "seq"} for n in (*ONNX_INPUTS, "token_embeddings") if n in (*ONNX_INPUTS, *outputs)}
    torch.onnx.export(
        mean_pooled_module(bert, with_tokens),
        tuple(sample[n] for n in ONNX_INPUTS),
        str(raw),
        input_names=list(ONNX_INPUTS),
        output_names=outputs,
        dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter needs no onnxscript rewrites for BERT
    )
    return bert.config


def mean_pooled_module(bert, with_tokens: bool = False):
    """BERT plus mean pooling and normalization (what sentence-transformers returns), as a
    module to export; `with_tokens` also returns the token embeddings. A factory, because
    torch must not be imported when this module is."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
            return (tokens, pooled) if with_tokens else pooled

    return MeanPooled()


def export_query_graph(model_dir: Path, weights_sha256: str, cache_dir: Path) -> Path:
    return export_onnx(model_dir, onnx_cache(cache_dir, weights_sha256) / QUERY_GRAPH, False, fused_graph)


def export_passage_graph(model_dir: Path, weights_sha256: str, cache_dir: Path) -> Path:
    return export_onnx(model_dir, onnx_cache(cache_dir, weights_sha256) / PASSAGE_GRAPH, True, int8_graph)
