"""What a generation is: its records (papers, segments, snapshot), its layout on disk and its
format's version. The layout of a local index:

    index/
      CURRENT                 name of the live generation, replaced atomically
      segments/<id>/          one paper's chunks.jsonl, vectors.npy, sentences.npy and terms.npz
                              (keyword term counts), never modified
      gen-000007/             manifest.json (papers, checksums of every file), and dense.faiss
                              when the dense index is an HNSW graph

A build writes a new generation beside the old one and only then points CURRENT at it, so a
killed build leaves the previous generation live. Exact (flat) search and BM25 are assembled on
load from the segments, so adding a paper writes that paper and a manifest, not the whole index.
Nothing is pickled: JSON, .npy/.npz (loaded with allow_pickle=False) and FAISS files only, each
checked against the manifest's sha256 before it is parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..dense import dense_vector, search_dense
from ..lexical import KeywordIndex, TermCounts
from ..types import Chunk, PaperInfo

# 2: the manifest carries its own sha256 (manifest_sha256), checked before anything else.
# 3: segments keep their keyword term counts; a flat generation has no dense file of its own.
# 4: a segment's term vocabulary is one string, read without a Python object per term.
# 5: chunks carry their role and heading path, and their sentences' roles as one letter each
#    (sentence_roles; regions.py); PDF text gives headings lines of their own.
# 7: papers carry their year, DOI, arXiv id, venue and URL, and what their file says where
#    papers.toml overrides it (found), so that editing papers.toml needs no re-parsing; segments
#    keep lines.npy, where each line of a PDF's text stands in PDFium's text of its page
#    (sourcemap.py), for the source view.
FORMAT = 7
CURRENT = "CURRENT"
FORBIDDEN_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".bin")


@dataclass(frozen=True)
class ModelInfo:
    """The embedding model a generation's vectors come from, as its manifest records it."""

    id: str
    fingerprint: str
    dimension: int
    max_tokens: int

    @classmethod
    def of(cls, embedder) -> ModelInfo:
        return cls(embedder.model_id, embedder.fingerprint, embedder.dimension, embedder.max_tokens)

    @classmethod
    def from_manifest(cls, manifest: dict) -> ModelInfo:
        model = manifest["model"]
        return cls(model["id"], model["fingerprint"], model["dimension"], model["max_tokens"])


@dataclass(frozen=True)
class Segment:
    """A newly read paper, whole: its chunks with their vectors, sentence vectors, keyword term
    counts and line anchors, everything a generation needs of it."""

    paper: PaperInfo
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    sentence_vectors: np.ndarray  # one row per chunk sentence, chunk by chunk
    terms: TermCounts
    lines: np.ndarray  # the paper's line anchors (sourcemap.py)


@dataclass(frozen=True)
class KeptPaper:
    """A paper of the live generation carried into the next one: its segment stays as it is in
    the store, only its record may change (an edit of papers.toml)."""

    paper: PaperInfo


@dataclass(frozen=True)
class Snapshot:
    """One loaded generation. Queries hold a reference to a snapshot, so a rebuild switching
    generations never mixes passages from two of them."""

    path: Path
    generation: int
    manifest: dict
    papers: tuple[PaperInfo, ...]
    chunks: tuple[Chunk, ...]
    dense: object  # faiss.Index
    keyword: KeywordIndex | None
    chunk_papers: tuple[int, ...] = field(repr=False, default=())  # row -> index into papers
    # One float16 block per paper: at 1M chunks they are gigabytes that a copy into one matrix
    # would hold twice while loading, and that an add would copy again.
    sentence_blocks: tuple[np.ndarray, ...] = field(repr=False, default=())
    sentence_starts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))  # in its block

    @property
    def corpus_dir(self) -> str | None:
        """The corpus folder the generation was written from."""
        return self.manifest.get("corpus_dir")

    def rows(self) -> dict[str, tuple[int, int, int]]:
        """Each paper's (number, first row, end row), by paper id."""
        out, start = {}, 0
        for number, paper in enumerate(self.papers):
            out[paper.paper_id] = (number, start, start + paper.n_chunks)
            start += paper.n_chunks
        return out

    def paper_of(self, row: int) -> PaperInfo:
        return self.papers[self.chunk_papers[row]]

    def chunk_vector(self, row: int) -> np.ndarray:
        return dense_vector(self.dense, row)

    def dense_search(self, vector: np.ndarray, k: int, rows=None) -> tuple[list[int], list[float]]:
        """The k nearest rows (within `rows`, [start, stop) ranges), best first, by inner product."""
        scores, found = search_dense(self.dense, vector, k, rows)
        pairs = [(int(r), float(s)) for r, s in zip(found[0], scores[0]) if r >= 0]
        return [r for r, _ in pairs], [s for _, s in pairs]

    def chunk_row(self, chunk_id: str) -> int | None:
        return next((row for row, c in enumerate(self.chunks) if c.chunk_id == chunk_id), None)

    def sentence_matrix(self, row: int) -> np.ndarray:
        """Vectors of chunk `row`'s sentences, in the order of `Chunk.sentences`."""
        start = self.sentence_starts[row]
        block = self.sentence_blocks[self.chunk_papers[row]]
        return block[start : start + len(self.chunks[row].sentences)].astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.chunks)


def segment_id(content_hash: str, signature: dict) -> str:
    """Named by content, settings and format: a segment on disk is reused only when it holds
    exactly what this version would write (a segment of another format never is)."""
    payload = json.dumps({"content": content_hash, **signature, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("faiss-cpu", "bm25s", "sentence-transformers", "transformers", "torch", "onnxruntime", "pypdf", "pypdfium2", "sentencex"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


_GEN_NAME = re.compile(r"gen-\d{6}")
_SEGMENT_NAME = re.compile(r"[0-9a-f]{24}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
SEGMENT_FILES = ("chunks.jsonl", "vectors.npy", "sentences.npy", "terms.npz", "lines.npy")
LINES_FILE = "lines.npy"
MANIFEST_DIGEST = "manifest_sha256"

def manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's content without its own digest field, in a canonical form, so that
    any change to what the manifest says (titles included) is detected."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def assemble(gen_dir: Path, manifest: dict, papers, chunks, dense, keyword, sentence_blocks) -> Snapshot:
    starts, row = np.zeros(len(chunks), np.int64), 0
    for paper in papers:
        counts = [len(c.sentences) for c in chunks[row : row + paper.n_chunks]]
        starts[row : row + paper.n_chunks] = np.cumsum([0] + counts[:-1]) if counts else []
        row += paper.n_chunks
    return Snapshot(
        path=gen_dir,
        generation=int(gen_dir.name.split("-")[1]),
        manifest=manifest,
        papers=tuple(papers),
        chunks=tuple(chunks),
        dense=dense,
        keyword=keyword,
        chunk_papers=tuple(i for i, paper in enumerate(papers) for _ in range(paper.n_chunks)),
        sentence_blocks=tuple(sentence_blocks),
        sentence_starts=starts,
    )


