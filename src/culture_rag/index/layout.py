"""What a generation is: its records (papers, segments, parts, snapshot), its layout on disk
and its format's version. The layout of a local index:

    index/
      CURRENT                 name of the live generation, replaced atomically
      segments/<id>/          one paper's chunks.jsonl, vectors.npy, sentences.npy, terms.npz
                              (keyword term counts) and lines.npy, never modified
      parts/<id>/             a merged part: many papers' vectors as one FAISS index
                              (dense.faiss: exact up to 200k rows, an inverted file above), their
                              keyword postings (terms/ptr/rows/tf/lengths.npy), each row's passage
                              kind (kinds.npy), chunk-id hash (hashes.npy) and first sentence in
                              its paper's sentences.npy (sentence_starts.npy), never modified
      gen-000007/manifest.json  papers, where each paper's rows lie (placement), the parts, and
                              the sha256 of every file of every segment and part

A generation's rows are its parts' rows end to end. A part is either merged or one paper's
segment (a paper added since the last merge): adding a paper writes its segment and a
manifest, and a merge policy (writing.py) folds small parts together now and then, as an LSM
tree does. Opening a generation verifies and maps its parts, and reads no chunk: a paper's
segment files are verified (sha256) and parsed when a query first touches that paper.
A build writes a new generation beside the old one and only then points CURRENT at it, so a
killed build leaves the previous generation live. Nothing is pickled: JSON, .npy/.npz (loaded
with allow_pickle=False) and FAISS files only, each checked against the manifest's sha256
before it is parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import numpy as np

from culture_rag.index.lexical import KeywordHits, TermCounts
from culture_rag.types import Chunk, PaperInfo

# 2: the manifest carries its own sha256 (manifest_sha256), checked before anything else.
# 3: segments keep their keyword term counts; a flat generation has no dense file of its own.
# 4: a segment's term vocabulary is one string, read without a Python object per term.
# 5: chunks carry their role and heading path, and their sentences' roles as one letter each
#    (sentence_roles; regions.py); PDF text gives headings lines of their own.
# 7: papers carry their year, DOI, arXiv id, venue and URL, and what their file says where
#    papers.toml overrides it (found), so that editing papers.toml needs no re-parsing; segments
#    keep lines.npy, where each line of a PDF's text stands in PDFium's text of its page
#    (sourcemap.py), for the source view.
# 8: generations of parts (merged parts plus single-segment parts), opened without reading
#    chunks; a format-7 generation is read as one segment part per paper, and `build` rewrites it
#    in format 8 without embedding anything again (its segments are format-8 segments too).
FORMAT = 8
READABLE_FORMATS = (7, 8)
SEGMENT_FORMAT = 7  # what segment ids are named by: a segment's files last changed in format 7
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


class KeywordSearch(Protocol):
    """The keyword side of a generation (lexical.KeywordIndex for a local one)."""

    def search(self, query: str, k: int, within: Sequence[tuple[int, int]] | None = None) -> KeywordHits: ...

    def idf(self, words: list[str]) -> dict[str, float]: ...

    def used_within(self, words: list[str], within: Sequence[tuple[int, int]]) -> set[str]: ...


class Snapshot(Protocol):
    """One loaded generation, as questions read it. Queries hold a reference to a snapshot, so a
    rebuild switching generations never mixes passages from two of them. Rows: each paper's
    chunks are consecutive rows, `rows()` says where; a removed paper may leave unused rows."""

    generation: int
    manifest: dict
    papers: tuple[PaperInfo, ...]

    @property
    def size(self) -> int:
        """The number of rows."""

    @property
    def chunks(self) -> Sequence[Chunk]:
        """chunks[row] and chunks[start:stop], read when asked for."""

    @property
    def keyword(self) -> KeywordSearch | None: ...

    @property
    def corpus_dir(self) -> str | None: ...

    @property
    def outdated(self) -> bool:
        """Written in an older format that the next write upgrades."""

    def rows(self) -> dict[str, tuple[int, int, int]]:
        """Each paper's (number, first row, end row), by paper id."""

    def paper_of(self, row: int) -> PaperInfo: ...

    def kinds(self, rows: Sequence[int]) -> np.ndarray:
        """Each row's passage kind (chunking.passage_kind), as uint8."""

    def chunk_vector(self, row: int) -> np.ndarray: ...

    def sentence_matrix(self, row: int) -> np.ndarray:
        """Vectors of chunk `row`'s sentences, in the order of `Chunk.sentences`."""

    def dense_search(
        self, vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None
    ) -> tuple[list[int], list[float]]:
        """The k nearest rows and their inner products, best first; within `rows` when given."""

    def chunk_row(self, chunk_id: str) -> int | None: ...


def segment_id(content_hash: str, signature: dict) -> str:
    """Named by content, settings and format: a segment on disk is reused only when it holds
    exactly what this version would write (a segment of another format never is)."""
    payload = json.dumps({"content": content_hash, **signature, "format": SEGMENT_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("faiss-cpu", "bm25s", "sentence-transformers", "transformers", "torch", "onnxruntime", "pypdf", "pypdfium2", "sentencex"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


_GEN_NAME = re.compile(r"gen-\d{6}")
_SEGMENT_NAME = re.compile(r"[0-9a-f]{24}")  # segment and part ids
_SHA256 = re.compile(r"[0-9a-f]{64}")
SEGMENT_FILES = ("chunks.jsonl", "vectors.npy", "sentences.npy", "terms.npz", "lines.npy")
PART_FILES = (
    "dense.faiss", "terms.npy", "ptr.npy", "rows.npy", "tf.npy", "lengths.npy", "kinds.npy", "hashes.npy", "sentence_starts.npy",
)
LINES_FILE = "lines.npy"
MANIFEST_DIGEST = "manifest_sha256"

def manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's content without its own digest field, in a canonical form, so that
    any change to what the manifest says (titles included) is detected."""
    return digest_of(canonical_json(manifest))


def digest_matches(manifest: dict) -> bool:
    """Whether the manifest's recorded digest is that of its content. orjson and json write the
    same canonical bytes except for rare escapes; a manifest written before orjson is checked
    in json's form when orjson's differs."""
    recorded = manifest.get(MANIFEST_DIGEST)
    return recorded is not None and recorded in (manifest_digest(manifest), digest_of(_json_canonical(manifest)))


def canonical_json(manifest: dict) -> bytes:
    """A manifest without its digest field as sorted, compact UTF-8 JSON: orjson's, six times
    faster than json's at 12k papers (it is written on every add)."""
    import orjson

    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a lone surrogate in a title: json's form, as before
        return _json_canonical(manifest)


def _json_canonical(manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def digest_of(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()
