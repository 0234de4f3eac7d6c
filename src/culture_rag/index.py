"""The index on disk: immutable per-paper segments plus generations, switched atomically.

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
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .backend.quantize import int8_kernels
from .files import file_sha256, replacing, write_text
from .regions import ROLE_CODES, ROLES
from .errors import IndexLoadError, IndexModelMismatch, IndexWriteError
from .lexical import KeywordIndex, TermCounts, TermFileError
from .types import Chunk, PaperInfo, PaperMeta, Span

log = logging.getLogger(__name__)

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
# Exact search scans every vector: about 8 ms per 100k on one core here, so up to 200k it stays
# within the latency budget, keeps recall exact, and rebuilds in a blink when a paper is added
# (an HNSW graph must be rebuilt whole). Above it, HNSW answers in about 3 ms (bench/scale.py).
HNSW_THRESHOLD = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40  # 80 built 1.7x slower (100k) for +0.004 recall@50
# Nodes explored per query. On bench/synthetic.py's real-like vectors, recall@10 against exact
# search: 100k 0.998 at 128; 1M 0.73 at 128, 0.90 at 512, 0.99 at 1024 (3 ms, exact: 87 ms).
HNSW_EF_SEARCH = 1024
FORBIDDEN_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".bin")


@dataclass(frozen=True)
class Segment:
    """A paper's chunks and their vectors, ready to be written or merged."""

    paper: PaperInfo
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray | None  # None: a paper of the generation in memory, which holds them
    sentence_vectors: np.ndarray  # one row per chunk sentence, chunk by chunk
    terms: TermCounts | None = None  # keyword term counts; None: tokenized when written, or held as vectors
    lines: np.ndarray | None = None  # the paper's line anchors (sourcemap.py); None: on disk already


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

    def segments(self) -> dict[str, Segment]:
        """Every paper's segment, by paper id, as the next generation is written from them:
        their vectors and term counts stay here (write_generation takes them only if it must
        rebuild), so adding a paper neither reads the disk nor copies the index."""
        out, start = {}, 0
        for number, paper in enumerate(self.papers):
            stop = start + paper.n_chunks
            out[paper.paper_id] = Segment(paper, self.chunks[start:stop], None, self.sentence_blocks[number])
            start = stop
        return out

    def complete(self, segments: list[Segment]) -> list[Segment]:
        """`segments` with the vectors and term counts of this generation's papers filled in."""
        if all(s.vectors is not None for s in segments):
            return segments
        vectors = stored_vectors(self.dense)
        starts = dict(zip((p.paper_id for p in self.papers), np.cumsum([0] + [p.n_chunks for p in self.papers])))
        out = []
        for seg in segments:
            if seg.vectors is None:
                a = int(starts[seg.paper.paper_id])
                b = a + len(seg.chunks)
                seg = replace(seg, vectors=vectors[a:b], terms=self.keyword.counts(a, b) if self.keyword else None)
            out.append(seg)
        return out

    def chunk_vector(self, row: int) -> np.ndarray:
        return dense_vector(self.dense, row)

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


# --- reading -----------------------------------------------------------------------------


_GEN_NAME = re.compile(r"gen-\d{6}")
_SEGMENT_NAME = re.compile(r"[0-9a-f]{24}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
SEGMENT_FILES = ("chunks.jsonl", "vectors.npy", "sentences.npy", "terms.npz", "lines.npy")
LINES_FILE = "lines.npy"
MANIFEST_DIGEST = "manifest_sha256"


def read_current(index_dir: Path) -> str | None:
    path = Path(index_dir) / CURRENT
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexLoadError(path, f"cannot read it ({exc.strerror or exc}); check the index folder") from None
    name = raw[:64].decode("utf-8", "replace").strip()
    if not _GEN_NAME.fullmatch(name):
        raise IndexLoadError(
            path, f"does not name a generation ({name[:40]!r}); write the name of a gen-NNNNNN folder into it, "
            "or delete the index folder and run `culture-rag build`"
        )
    return name


def generations(index_dir: Path) -> list[str]:
    if not index_dir.is_dir():
        return []
    return sorted((p.name for p in index_dir.iterdir() if _GEN_NAME.fullmatch(p.name) and p.is_dir()), reverse=True)


def load_snapshot(index_dir: Path, fingerprint: str, dimension: int, fallback: bool = True) -> Snapshot:
    """Load the live generation, verified. With `fallback`, a damaged generation is skipped for
    the newest older one that verifies, with a warning; a model mismatch is never skipped."""
    index_dir = Path(index_dir)
    first_error: IndexLoadError | None = None
    try:
        current = read_current(index_dir)
    except IndexLoadError as exc:
        if not fallback or not generations(index_dir):
            raise
        # CURRENT is written atomically, so damage here is bit rot or tampering: the newest
        # generation that verifies is the best guess of what was live.
        first_error, current = exc, None
        candidates = generations(index_dir)
    else:
        if current is None:
            raise IndexLoadError(index_dir, "no index here; build one with `culture-rag build CORPUS_DIR --index DIR`")
        candidates = [current] + ([g for g in generations(index_dir) if g < current] if fallback else [])
        if not (index_dir / current).is_dir():
            # A generation is only named after it is complete, so a missing one means CURRENT is damaged.
            first_error = IndexLoadError(index_dir / CURRENT, f"names {current}, which does not exist")
            if not fallback:
                raise IndexLoadError(
                    first_error.path, f"{first_error.detail}; write the name of an existing gen-NNNNNN folder into it, "
                    "or delete the index folder and run `culture-rag build`"
                )
            candidates = generations(index_dir)
    for name in candidates:
        try:
            snapshot = _load_generation(index_dir, index_dir / name, fingerprint, dimension)
        except IndexModelMismatch:
            raise
        except IndexLoadError as exc:
            first_error = first_error or exc
            log.warning("skipping damaged index generation: %s", exc)
            continue
        except Exception as exc:  # noqa: BLE001  whatever a damaged file makes a parser raise, it is damage
            error = IndexLoadError(index_dir / name, f"unreadable ({type(exc).__name__}: {str(exc)[:200]})")
            first_error = first_error or error
            log.warning("skipping damaged index generation: %s", error)
            continue
        if name != current:
            log.warning("%s; serving the intact generation %s instead", first_error, name)
        return snapshot
    assert first_error is not None
    older = " and no older generation is intact" if fallback and len(candidates) > 1 else ""
    raise IndexLoadError(
        first_error.path,
        f"{first_error.detail}{older}; delete the index folder {index_dir} and run `culture-rag build` to rebuild it",
    )


def manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's content without its own digest field, in a canonical form, so that
    any change to what the manifest says (titles included) is detected."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _read_manifest(manifest_path: Path) -> dict:
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        raise IndexLoadError(manifest_path, "missing; the generation is incomplete") from None
    except OSError as exc:
        raise IndexLoadError(manifest_path, f"cannot read it ({exc.strerror or exc})") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(manifest_path, f"damaged manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise IndexLoadError(manifest_path, "damaged manifest (not a JSON object)")
    recorded = manifest.get(MANIFEST_DIGEST)
    intact = recorded is not None and recorded == manifest_digest(manifest)
    if manifest.get("format") == 1 or (intact and manifest.get("format") != FORMAT):
        # An intact manifest of another format (format 1 had no digest) is another version's
        # index, not damage: `build` re-embeds it.
        raise IndexModelMismatch(
            manifest_path, f"written in index format {manifest.get('format')!r}, this version reads {FORMAT}; "
            "run `culture-rag build` to index the papers again"
        )
    if recorded is None:
        raise IndexLoadError(manifest_path, "the manifest's own checksum is missing: it is damaged or was changed")
    if not intact:
        raise IndexLoadError(manifest_path, "checksum mismatch: the manifest is damaged or was changed")
    return manifest


def _field(manifest_path: Path, manifest: dict, name: str, kind: type):
    value = manifest.get(name)
    if not isinstance(value, kind):
        raise IndexLoadError(manifest_path, f"damaged manifest: field {name!r} is missing or not a {kind.__name__}")
    return value


# Before its scheme was named, the int8 graph had 8-bit weights: vectors that depend on the CPU.
_LEGACY_INT8 = " (int8 vectors with 8-bit weights, which come out differently on CPUs with and without VNNI)"


def _load_generation(index_dir: Path, gen_dir: Path, fingerprint: str, dimension: int) -> Snapshot:
    manifest_path = gen_dir / "manifest.json"
    manifest = _read_manifest(manifest_path)
    model = _field(manifest_path, manifest, "model", dict)
    if model.get("fingerprint") != fingerprint:
        raise IndexModelMismatch(
            manifest_path,
            f"built with model {model.get('fingerprint')!r} but the configured model is {fingerprint!r}"
            f"{_LEGACY_INT8 if str(model.get('fingerprint')).endswith('+onnx-int8') else ''}; "
            "rebuild with `culture-rag build` or configure the original model",
        )
    if model.get("dimension") != dimension:
        raise IndexModelMismatch(manifest_path, f"dimension {model.get('dimension')} does not match the model's {dimension}")
    _refuse_pickles(gen_dir)
    files = _field(manifest_path, manifest, "files", dict)
    hnsw = manifest.get("dense_type") == "hnsw"
    # Every file the loader parses must be covered by a checksum, checked before any parser
    # (faiss.read_index, numpy) sees a byte of it.
    on_disk = {str(p.relative_to(gen_dir)) for p in gen_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    unlisted = sorted(on_disk - set(files)) + ([] if "dense.faiss" in files or not hnsw else ["dense.faiss"])
    if unlisted:
        raise IndexLoadError(gen_dir / unlisted[0], "has no checksum in the manifest; the generation was tampered with")
    _verify_files(gen_dir, files)
    loaded = _load_segments(index_dir, manifest, dimension, manifest_path, keep_vectors=not hnsw)
    chunks = loaded.chunks
    if manifest.get("n_chunks", len(chunks)) != len(chunks):
        raise IndexLoadError(manifest_path, f"n_chunks is {manifest.get('n_chunks')!r} but the segments hold {len(chunks)}")
    if hnsw:
        dense = _read_faiss(gen_dir / "dense.faiss")
        if dense.d != dimension:
            raise IndexLoadError(gen_dir / "dense.faiss", f"vectors of dimension {dense.d}, the model's is {dimension}; rebuild")
        if dense.ntotal != len(chunks):
            raise IndexLoadError(gen_dir / "dense.faiss", f"{dense.ntotal} vectors for {len(chunks)} chunks; rebuild")
    else:  # exact search over the segments' own vectors, verified above
        dense = build_dense(np.concatenate(loaded.vectors) if loaded.vectors else np.zeros((0, dimension), np.float32), dimension)
    try:
        keyword = KeywordIndex.of_counts(TermCounts.merge_files(loaded.terms)) if chunks else None
    except TermFileError as exc:
        raise IndexLoadError(exc.path, exc.detail) from None
    return _assemble(gen_dir, manifest, loaded.papers, chunks, dense, keyword, loaded.sentences)


def _assemble(gen_dir: Path, manifest: dict, papers, chunks, dense, keyword, sentence_blocks) -> Snapshot:
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


def _refuse_pickles(folder: Path) -> None:
    stray = [p for p in folder.rglob("*") if p.suffix.lower() in FORBIDDEN_SUFFIXES]
    if stray:
        raise IndexLoadError(stray[0], "unexpected pickle-like file in the index; refusing to load it (never unpickled)")


def _verify_files(base: Path, checksums: dict[str, str]) -> None:
    for rel, expected in checksums.items():
        parts = Path(rel).parts if isinstance(rel, str) else ()
        if not parts or Path(rel).is_absolute() or ".." in parts or not (isinstance(expected, str) and _SHA256.fullmatch(expected)):
            raise IndexLoadError(base, f"the manifest's checksum entry {rel!r} is damaged")
        path = base / rel
        if not path.is_file():
            raise IndexLoadError(path, "missing file; the index is incomplete")
        try:
            actual = file_sha256(path)
        except OSError as exc:
            raise IndexLoadError(path, f"cannot read it ({exc.strerror or exc})") from None
        if actual != expected:
            raise IndexLoadError(path, "checksum mismatch: the file is damaged or was changed")


def _read_faiss(path: Path):
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexLoadError(path, f"cannot read the vector index: {str(exc).splitlines()[0]}") from None


def _load_array(path: Path, rows: int, dimension: int, mmap: bool = False) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:  # object arrays (pickles) end here too
        raise IndexLoadError(path, f"not a plain numeric array ({exc})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise IndexLoadError(path, "not an array of floating-point vectors")
    if array.shape != (rows, dimension):
        raise IndexLoadError(path, f"shape {array.shape} does not match {rows} rows of dimension {dimension}")
    return array


@dataclass(frozen=True)
class _Loaded:
    papers: list[PaperInfo]
    chunks: list[Chunk]
    vectors: list[np.ndarray]
    sentences: list[np.ndarray]
    terms: list[tuple[Path, int]]  # each segment's saved term counts and its number of chunks


def _load_segments(index_dir: Path, manifest: dict, dimension: int, manifest_path: Path, keep_vectors: bool) -> _Loaded:
    records = manifest.get("papers", [])
    checksums = manifest.get("segments", {})
    if not isinstance(records, list) or not isinstance(checksums, dict):
        raise IndexLoadError(manifest_path, "damaged manifest: 'papers' or 'segments' has the wrong type")
    out = _Loaded([], [], [], [], [])
    for number, record in enumerate(records):
        try:
            found = PaperMeta.from_dict(record["found"]) if record.get("found") is not None else None
            ocr_pages = tuple(record.get("ocr_pages", ()))
            info = PaperInfo(**{**record, "authors": tuple(record["authors"]), "found": found, "ocr_pages": ocr_pages})
        except (TypeError, KeyError, AttributeError) as exc:
            raise IndexLoadError(manifest_path, f"damaged manifest: paper record {number} is malformed ({exc})") from None
        if not (isinstance(info.segment, str) and _SEGMENT_NAME.fullmatch(info.segment)):
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} names segment {info.segment!r}")
        if not isinstance(info.n_chunks, int) or isinstance(info.n_chunks, bool):
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} has n_chunks {info.n_chunks!r}")
        seg_dir = index_dir / "segments" / info.segment
        expected = checksums.get(info.segment)
        if not isinstance(expected, dict) or sorted(expected) != sorted(SEGMENT_FILES):
            raise IndexLoadError(manifest_path, f"damaged manifest: no checksums for segment {info.segment}")
        _refuse_pickles(seg_dir)
        _verify_files(seg_dir, expected)
        seg_chunks = read_chunks(seg_dir / "chunks.jsonl")
        if len(seg_chunks) != info.n_chunks:
            raise IndexLoadError(seg_dir, f"{len(seg_chunks)} chunks but the manifest says {info.n_chunks}")
        # Segments are named by content, so two files with the same bytes share one, written with
        # the first one's paper id; the manifest's record says whose chunks these are here.
        seg_chunks = [c if c.paper_id == info.paper_id else replace(c, paper_id=info.paper_id) for c in seg_chunks]
        # An HNSW generation has its own copy of the vectors: check their shape only. Nothing
        # stays memory-mapped: each map holds a file descriptor, and 1M chunks are 13k segments.
        if keep_vectors:
            out.vectors.append(_load_array(seg_dir / "vectors.npy", len(seg_chunks), dimension))
        else:
            _load_array(seg_dir / "vectors.npy", len(seg_chunks), dimension, mmap=True)
        out.sentences.append(_load_array(seg_dir / "sentences.npy", sum(len(c.sentences) for c in seg_chunks), dimension))
        out.terms.append((seg_dir / "terms.npz", len(seg_chunks)))
        out.papers.append(info)
        out.chunks.extend(seg_chunks)
    return out


_CHUNK_TYPES = {
    "chunk_id": str, "paper_id": str, "text": str, "start": int, "end": int, "n_tokens": int,
    "page_start": (int, type(None)), "page_end": (int, type(None)), "section": (str, type(None)), "context": str,
    "role": str, "heading_path": list,
}
# One shared string per role: a million chunks' sentences would otherwise hold a copy each.
_ROLE_NAMES = {role: role for role in ROLES}
_ROLE_OF_CODE = {code: role for role, code in ROLE_CODES.items()}


def _sentences_fit(sentences: list, lo: int, hi: int) -> bool:
    """Each sentence is [start, end, page] with int offsets inside the chunk's [lo, hi] and an
    int or null page. Checked on the raw lists, before any Span exists: a load checks millions
    of them."""
    return type(sentences) is list and all(
        type(s) is list
        and len(s) == 3
        and type(s[0]) is int
        and type(s[1]) is int
        and lo <= s[0] <= s[1] <= hi
        and (s[2] is None or type(s[2]) is int)
        for s in sentences
    )


def _roles_fit(codes, sentences: list) -> bool:
    """One known role letter per sentence."""
    return type(codes) is str and len(codes) == len(sentences) and set(codes) <= _ROLE_OF_CODE.keys()


def read_chunks(path: Path) -> list[Chunk]:
    out = []
    number = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                raw = json.loads(line)
                sentences = raw.pop("sentences")
                codes = raw.pop("sentence_roles")
                wrong = [k for k, kind in _CHUNK_TYPES.items() if k in raw and not isinstance(raw[k], kind)]
                # The text must be the slice it claims to be, and its sentences inside it: answers quote by offset.
                if wrong or raw["end"] - raw["start"] != len(raw["text"]) or not _sentences_fit(sentences, raw["start"], raw["end"]):
                    raise ValueError(f"inconsistent fields {wrong or ['start', 'end', 'sentences']}")
                # join refuses a heading that is not a string, in C: a load checks millions
                if raw["role"] not in _ROLE_NAMES or not _roles_fit(codes, sentences) or "".join(raw["heading_path"]) is None:
                    raise ValueError("inconsistent fields ['role', 'sentence_roles', 'heading_path']")
                raw["role"] = _ROLE_NAMES[raw["role"]]
                raw["heading_path"] = tuple(raw["heading_path"])
                spans = tuple([Span(a, b, p, _ROLE_OF_CODE[c]) for (a, b, p), c in zip(sentences, codes)])
                out.append(Chunk(**raw, sentences=spans))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise IndexLoadError(path, f"malformed chunk on line {number} ({exc})") from None
    return out


# --- writing -----------------------------------------------------------------------------


@contextlib.contextmanager
def write_lock(index_dir: Path):
    """One writer at a time per index directory, across processes."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_generation(
    index_dir: Path,
    segments: list[Segment],
    header: dict,
    keep: int,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Write every new segment, then a generation (its manifest, plus the graph when the dense
    index is HNSW), then switch CURRENT to it; returns the new generation, assembled in memory.
    With `previous`, segments already on disk keep their checksums, and when the segments are
    its papers followed by new ones, its dense and keyword indexes are extended rather than
    rebuilt: adding a paper costs about that paper, not the whole index."""
    segments = _with_terms(segments)
    known_checksums = previous.manifest.get("segments", {}) if previous is not None else {}
    final = None
    try:
        checksums = {}
        for seg in segments:
            known = known_checksums.get(seg.paper.segment)
            if known and seg.vectors is None:  # on disk, and kept there: the live generation names it
                checksums[seg.paper.segment] = known
                continue
            wrote = _write_segment(index_dir, seg, previous)
            checksums[seg.paper.segment] = known if known and not wrote else _segment_checksums(index_dir, seg.paper.segment)
        dense, keyword = _search_indexes(segments, header["model"]["dimension"], previous)
        number = int(generations(index_dir)[0].split("-")[1]) + 1 if generations(index_dir) else 1
        final = index_dir / f"gen-{number:06d}"
        with replacing(final, folder=True) as tmp:
            manifest = _write_generation_files(tmp, segments, _with_int8_kernels(header, segments, previous), number, checksums, dense)
        write_text(index_dir / CURRENT, final.name + "\n")
    except BaseException as exc:
        live = _discard_failed_write(index_dir, final)
        # faiss reports a full disk as RuntimeError; MemoryError while building is as harmless to the old index.
        if not isinstance(exc, (OSError, RuntimeError, MemoryError)):
            raise
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, RuntimeError):  # faiss: "Error in ... write error in PATH: 8147 != 25600 (File too large)"
            tail = re.search(r"\(([^()]+)\)\s*$", str(exc))
            reason = f"the vector index could not be written: {tail.group(1) if tail else reason}"
        served = (
            f"the new generation {final.name} is in place but could not be confirmed on disk; check the disk"
            if live
            else "the previous index is still served; free disk space or fix the disk, then retry"
        )
        raise IndexWriteError(f"{index_dir}: writing the new index failed ({reason}); {served}") from exc
    try:
        _collect_garbage(index_dir, keep)
    except OSError as exc:  # the new index is live; leftovers are collected by the next write
        log.warning("%s: could not remove old index files (%s)", index_dir, exc)
    blocks = [s.sentence_vectors.astype(np.float16, copy=False) for s in segments]  # as loading gives them
    chunks = [c for seg in segments for c in seg.chunks]
    return _assemble(final, manifest, [s.paper for s in segments], chunks, dense, keyword, blocks)


def _search_indexes(segments: list[Segment], dim: int, previous: Snapshot | None):
    """(dense, keyword) for `segments`: the previous generation's extended by the new papers
    when those come after all of its own, in its order; built from every segment otherwise."""
    import faiss

    old = len(previous.papers) if previous is not None else 0
    extends = (
        previous is not None
        and previous.keyword is not None
        and len(segments) >= old
        and all(s.paper.segment == p.segment and s.paper.n_chunks == p.n_chunks for s, p in zip(segments, previous.papers))
        # the type the new size calls for, checked on the index itself (the threshold may differ)
        and isinstance(previous.dense, faiss.IndexHNSW) == (dense_type(sum(len(s.chunks) for s in segments)) == "hnsw")
    )
    new = segments[old:] if extends else (previous.complete(segments) if previous is not None else segments)
    vectors = np.concatenate([s.vectors for s in new]) if new else np.zeros((0, dim), np.float32)
    if not extends:
        counts = TermCounts.concat([s.terms for s in new])
        return build_dense(vectors, dim), (KeywordIndex.of_counts(counts) if len(vectors) else None)
    keyword = previous.keyword.appended(TermCounts.concat([s.terms for s in new])) if new else previous.keyword
    return _extend_dense(previous.dense, vectors, dim), keyword


MAX_SHARDS = 8  # flat indexes appended as shards of their own, merged into one beyond this


def _extend_dense(dense, vectors: np.ndarray, dim: int):
    """`dense` plus `vectors` after its last row, leaving `dense` as it is (queries may be
    searching it). Exact search gets the new vectors as a shard of their own: no copy of the
    index; an HNSW graph is copied and grown."""
    import faiss

    if not len(vectors):
        return dense
    if isinstance(dense, faiss.IndexHNSW):
        grown = faiss.clone_index(dense)
        _add_vectors(grown, vectors)
        return grown
    shards = _shards(dense) + [build_dense(vectors, dim)]
    if len(shards) > MAX_SHARDS:
        return build_dense(np.concatenate([stored_vectors(s) for s in shards]), dim)
    combined = faiss.IndexShards(dim, False, True)  # successive ids: rows continue from shard to shard
    for shard in shards:
        combined.add_shard(shard)  # faiss's wrapper keeps a reference to each shard
    return combined


def _shards(index) -> list:
    import faiss

    if isinstance(index, faiss.IndexShards):
        # The Python objects given to add_shard, which own the shards, in order (faiss's wrapper
        # keeps them there): a new IndexShards must hold these, not wrappers made from
        # index.at(i), or the shards die with the generation they came from.
        shards = list(index.referenced_objects)
        assert len(shards) == index.count()
        return shards
    return [index]


def dense_vector(index, row: int) -> np.ndarray:
    """The stored vector of one row, also across the shards of an extended exact index."""
    for shard in _shards(index):
        if row < shard.ntotal:
            return shard.reconstruct(row)
        row -= shard.ntotal
    raise IndexError(row)


def _discard_failed_write(index_dir: Path, final: Path | None) -> bool:
    """Remove what a failed write left (its temporary files remove themselves), so no
    unacknowledged generation is ever served as a fallback. True when CURRENT already names the
    new generation (keep it then)."""
    if final is None:
        return False
    try:
        live = read_current(index_dir) == final.name
    except IndexLoadError:
        live = False
    if not live:
        shutil.rmtree(final, ignore_errors=True)
    return live


def _with_int8_kernels(header: dict, segments: list[Segment], previous: Snapshot | None) -> dict:
    """int8 passage vectors record the int8 kernel families (backend.quantize.int8_kernels) of the CPUs
    that embedded them. The fingerprint's quantization scheme sums its int8 products exactly on
    every family (only fp32 rounding differs), so a machine of another family may add papers:
    its vectors are compatible, and its family joins the list. Kept papers keep their families; a rebuild that re-embeds everything drops them."""
    model = header["model"]
    if "+onnx-int8" not in model["fingerprint"]:
        return header
    families = set(previous.manifest["model"].get("int8_kernels", [])) if previous is not None else set()
    if all(s.vectors is not None for s in segments):
        families = set()
    if any(s.vectors is not None for s in segments) or not families:
        families.add(int8_kernels())
    return {**header, "model": {**model, "int8_kernels": sorted(families)}}


def _write_generation_files(tmp: Path, segments: list[Segment], header: dict, number: int, checksums: dict, dense) -> dict:
    import faiss

    n_chunks = sum(len(s.chunks) for s in segments)
    if dense_type(n_chunks) == "hnsw":  # a flat index is rebuilt from the segments' vectors on load
        faiss.write_index(dense, str(tmp / "dense.faiss"))
    files = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        **header,
        "format": FORMAT,
        "generation": number,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_chunks": n_chunks,
        "dense_type": dense_type(n_chunks),
        "papers": [_record(s.paper) for s in segments],
        "segments": {s.paper.segment: checksums[s.paper.segment] for s in segments},
        "files": files,
    }
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    # No indent: indenting falls back to the pure-Python encoder, 0.7 s per write at 13k papers.
    write_text(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False))
    return manifest


def _record(paper: PaperInfo) -> dict:
    """asdict(paper) without its deep copies: a manifest of 13k papers is written on every add."""
    row = {f.name: getattr(paper, f.name) for f in fields(PaperInfo)} | {"authors": list(paper.authors)}
    row["ocr_pages"] = list(paper.ocr_pages)
    row["found"] = paper.found.to_dict() if paper.found is not None else None
    return row


def _chunk_record(chunk: Chunk) -> dict:
    """asdict(chunk) without its deep copies (a tenth of a build's own work beside the model)."""
    row = {f.name: getattr(chunk, f.name) for f in fields(Chunk)}
    row["sentences"] = [[s.start, s.end, s.page] for s in chunk.sentences]
    row["sentence_roles"] = "".join(ROLE_CODES[s.role] for s in chunk.sentences)  # one letter a sentence
    row["heading_path"] = list(chunk.heading_path)
    return row


def _with_terms(segments: list[Segment]) -> list[Segment]:
    """Segments with their term counts; those without are tokenized in one batch."""
    missing = [s for s in segments if s.terms is None and s.vectors is not None]  # vectors None: kept papers
    if not missing:
        return segments
    fresh = TermCounts.of_texts([c.embed_text for s in missing for c in s.chunks])
    filled, start = {}, 0
    for seg in missing:
        filled[id(seg)] = replace(seg, terms=fresh.rows(start, start + len(seg.chunks)))
        start += len(seg.chunks)
    return [filled.get(id(s), s) for s in segments]


def dense_type(n: int) -> str:
    return "hnsw" if n > HNSW_THRESHOLD else "flat"


_search_threads = 1
_thread_state = threading.local()


def set_search_threads(n: int) -> None:
    """OpenMP threads per dense search (0: every core). OpenMP keeps this count per thread, so
    a count set once in the main thread never reaches a web server's request threads, which
    then search with every core; search_dense applies it in whichever thread searches."""
    global _search_threads
    _search_threads = n or os.cpu_count() or 1


def search_dense(
    index, vectors: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the k nearest; an HNSW graph explores at least HNSW_EF_SEARCH nodes
    (faiss's default of 16, raised only to k, loses neighbours when k is 50). With `rows`
    (half-open [start, stop) ranges), only those rows are candidates, so a scope still gets
    its k nearest rather than what is left of the unscoped k."""
    import faiss

    if getattr(_thread_state, "threads", None) != _search_threads:
        faiss.omp_set_num_threads(_search_threads)
        _thread_state.threads = _search_threads
    query = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, index.d)
    if rows is not None:
        return _search_rows(index, query, k, _merged(rows))
    if isinstance(index, faiss.IndexHNSW):
        return index.search(query, k, params=faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k)))
    return index.search(query, k)


def _merged(rows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty, non-overlapping ranges (adjacent papers become one range)."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in rows if b > a):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _search_rows(index, query: np.ndarray, k: int, rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    if isinstance(index, faiss.IndexShards):
        # IndexShards hands a selector to every shard unchanged, and shards test their own
        # local ids against it (faiss issue #5581): each shard is searched with its ranges
        # shifted into its own ids, and the lists merged.
        parts, offset = [], 0
        for shard in _shards(index):
            local = [(max(a, offset) - offset, min(b, offset + shard.ntotal) - offset) for a, b in rows]
            local = [(a, b) for a, b in local if b > a]
            if local:
                scores, ids = _search_rows(shard, query, k, local)
                parts.append((scores, np.where(ids >= 0, ids + offset, -1)))
            offset += shard.ntotal
        return _best_of(parts, query.shape[0], k)
    selector = _range_selector(rows)
    if isinstance(index, faiss.IndexHNSW):
        if sum(b - a for a, b in rows) <= HNSW_THRESHOLD:
            # A small scope is a needle for the graph, which may find fewer than k of it; an
            # exact scan of its rows costs what exact search of an index that size costs.
            return faiss.downcast_index(index.storage).search(query, k, params=faiss.SearchParameters(sel=selector))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        return index.search(query, k, params=params)
    return index.search(query, k, params=faiss.SearchParameters(sel=selector))


def _range_selector(rows: list[tuple[int, int]]):
    """One IDSelectorRange per range, joined with IDSelectorOr. Each selector refers to the
    ones it joins without owning them, so they are chained on `.kept` to live as long as it."""
    import faiss

    selectors = [faiss.IDSelectorRange(a, b) for a, b in rows] or [faiss.IDSelectorRange(0, 0)]
    selector = selectors[0]
    for other in selectors[1:]:
        joined = faiss.IDSelectorOr(selector, other)
        joined.kept = (selector, other)
        selector = joined
    return selector


def _best_of(parts: list[tuple[np.ndarray, np.ndarray]], n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (scores, rows) lists per query, best first; -1 rows pad."""
    if not parts:
        return np.full((n_queries, k), -np.inf, np.float32), np.full((n_queries, k), -1, np.int64)
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def stored_vectors(index) -> np.ndarray:
    """A copy of the vectors a flat or HNSW index holds, in row order: one memcpy of faiss's
    storage (reconstruct_n copies vector by vector, several times slower)."""
    import faiss

    if isinstance(index, faiss.IndexShards):
        return np.concatenate([stored_vectors(s) for s in _shards(index)])
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if index.ntotal == 0:
        return np.empty((0, index.d), np.float32)
    view = faiss.rev_swig_ptr(storage.get_xb(), index.ntotal * index.d)
    return np.array(view, dtype=np.float32).reshape(index.ntotal, index.d)  # a copy: the view dies with the index


def build_dense(vectors: np.ndarray, dim: int):
    import faiss

    if dense_type(len(vectors)) == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        index = faiss.IndexFlatIP(dim)
    _add_vectors(index, vectors)
    return index


def _add_vectors(index, vectors: np.ndarray) -> None:
    import faiss

    if len(vectors):
        # Building a graph parallelizes well, whatever count this thread searches with.
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        _thread_state.threads = None
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def _write_segment(index_dir: Path, seg: Segment, previous: Snapshot | None = None) -> bool:
    """Write a segment unless it is on disk already; True when it was written."""
    final = index_dir / "segments" / seg.paper.segment
    if final.is_dir() and all((final / name).is_file() for name in SEGMENT_FILES):
        return False  # segments are immutable and named by content, so a complete one is identical
    lines = seg.lines if seg.lines is not None else _lines_left(final)
    if final.is_dir():
        # Half deleted by a garbage collection that was killed: reusing it would fail every
        # later write of this paper, so it is written again.
        shutil.rmtree(final)
    if seg.vectors is None:
        assert previous is not None, "a segment without vectors comes from the previous generation"
        seg = previous.complete([seg])[0]
    with replacing(final, folder=True) as tmp:
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in seg.chunks:
                fh.write(json.dumps(_chunk_record(c), ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", np.ascontiguousarray(seg.vectors, dtype=np.float32), allow_pickle=False)
        # float16 halves the largest file; sentence scores need no more precision than that.
        np.save(tmp / "sentences.npy", np.ascontiguousarray(seg.sentence_vectors, dtype=np.float16), allow_pickle=False)
        seg.terms.save(tmp / "terms.npz")
        np.save(tmp / LINES_FILE, np.ascontiguousarray(lines, dtype=np.int32).reshape(-1, 3), allow_pickle=False)
    return True


def _lines_left(final: Path) -> np.ndarray:
    """The line anchors of a segment being rewritten from memory, which does not hold them."""
    try:
        return np.load(final / LINES_FILE, allow_pickle=False)
    except (OSError, ValueError):
        log.warning("%s: line anchors lost; the source view of this paper shows pages without highlights", final)
        return np.zeros((0, 3), np.int32)


def read_lines(index_dir: Path, manifest: dict, paper: PaperInfo) -> np.ndarray:
    """A paper's line anchors (rows of paper offset, page, page-text offset), checked against the
    manifest's checksum before numpy parses them. Read on demand: a query never needs them."""
    seg_dir = index_dir / "segments" / paper.segment
    expected = manifest.get("segments", {}).get(paper.segment, {})
    if not isinstance(expected, dict) or LINES_FILE not in expected:
        raise IndexLoadError(seg_dir, "no checksum for lines.npy in the manifest; rebuild with `culture-rag build`")
    _verify_files(seg_dir, {LINES_FILE: expected[LINES_FILE]})
    try:
        lines = np.load(seg_dir / LINES_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexLoadError(seg_dir / LINES_FILE, f"unreadable ({exc}); rebuild with `culture-rag build`") from None
    if lines.ndim != 2 or lines.shape[1] != 3 or not np.issubdtype(lines.dtype, np.integer):
        raise IndexLoadError(seg_dir / LINES_FILE, f"shape {lines.shape} {lines.dtype}, not rows of 3 integers; rebuild")
    return lines


def _segment_checksums(index_dir: Path, segment: str) -> dict[str, str]:
    seg_dir = index_dir / "segments" / segment
    return {name: file_sha256(seg_dir / name) for name in SEGMENT_FILES}


def _collect_garbage(index_dir: Path, keep: int) -> None:
    """Drop generations beyond `keep`, leftovers of killed builds, and unreferenced segments."""
    gens = generations(index_dir)
    for old in gens[keep:]:
        _remove_aside(index_dir / old)
    for leftover in list(index_dir.glob("*.tmp-*")) + list((index_dir / "segments").glob("*.tmp-*")):
        if not _pid_alive(leftover.name.rsplit("-", 1)[-1]):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    live: set[str] = set()
    for gen in gens[:keep]:
        try:
            live.update(json.loads((index_dir / gen / "manifest.json").read_text()).get("segments", {}))
        except (OSError, ValueError, AttributeError):
            return  # a kept generation we cannot read may still need its segments: delete none
    for seg_dir in (index_dir / "segments").glob("*"):
        if seg_dir.is_dir() and ".tmp-" not in seg_dir.name and seg_dir.name not in live:
            _remove_aside(seg_dir)


def _remove_aside(path: Path) -> None:
    """Rename, then delete: a cleanup killed half-way leaves a `.tmp-` leftover that is swept
    later, never a half-deleted folder under a live name that a later build would reuse."""
    aside = path.with_name(f"{path.name}.tmp-gc{os.getpid()}")
    try:
        os.replace(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
