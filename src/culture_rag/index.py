"""The index on disk: immutable per-paper segments plus generations, switched atomically.

    index/
      CURRENT                 name of the live generation, replaced atomically
      segments/<id>/          one paper's chunks.jsonl and vectors.npy, never modified
      gen-000007/             manifest.json (checksums of every file), dense.faiss, keyword/

A build writes a new generation beside the old one and only then points CURRENT at it, so a
killed build leaves the previous generation live. Nothing is pickled: JSON, .npy (loaded with
allow_pickle=False), FAISS and bm25s files only, each checked against the manifest's sha256
before it is parsed.
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
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .chunking import Chunk, Span
from .errors import IndexLoadError, IndexWriteError
from .lexical import KeywordIndex

log = logging.getLogger(__name__)

FORMAT = 1
CURRENT = "CURRENT"
HNSW_THRESHOLD = 200_000  # above this many chunks exact search gets slower than HNSW's recall cost is worth
FORBIDDEN_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".bin")


@dataclass(frozen=True)
class PaperInfo:
    """A paper as the index records it (no text)."""

    paper_id: str
    source: str
    title: str
    authors: tuple[str, ...]
    kind: str
    n_pages: int | None
    n_chunks: int
    content_hash: str
    added_at: str
    segment: str


@dataclass(frozen=True)
class Segment:
    """A paper's chunks and their vectors, ready to be written or merged."""

    paper: PaperInfo
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    sentence_vectors: np.ndarray  # one row per chunk sentence, chunk by chunk


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
    sentence_vectors: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float16))
    sentence_rows: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(1, np.int64))

    def sentence_matrix(self, row: int) -> np.ndarray:
        """Vectors of chunk `row`'s sentences, in the order of `Chunk.sentences`."""
        return self.sentence_vectors[self.sentence_rows[row] : self.sentence_rows[row + 1]].astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.chunks)


def segment_id(content_hash: str, signature: dict) -> str:
    payload = json.dumps({"content": content_hash, **signature}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("faiss-cpu", "bm25s", "sentence-transformers", "transformers", "torch", "pypdf"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


# --- reading -----------------------------------------------------------------------------


def read_current(index_dir: Path) -> str | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    if not re.fullmatch(r"gen-\d{6}", name):
        raise IndexLoadError(index_dir / CURRENT, f"does not name a generation ({name[:40]!r}); rebuild the index")
    return name


def generations(index_dir: Path) -> list[str]:
    if not index_dir.is_dir():
        return []
    return sorted((p.name for p in index_dir.iterdir() if re.fullmatch(r"gen-\d{6}", p.name)), reverse=True)


def load_snapshot(index_dir: Path, fingerprint: str, dimension: int, fallback: bool = True) -> Snapshot:
    """Load the live generation, verified. With `fallback`, a damaged generation is skipped for
    the newest older one that verifies, with a warning; a model mismatch is never skipped."""
    index_dir = Path(index_dir)
    current = read_current(index_dir)
    if current is None:
        raise IndexLoadError(index_dir, "no index here; build one with `culture-rag build CORPUS_DIR --index DIR`")
    candidates = [current] + ([g for g in generations(index_dir) if g < current] if fallback else [])
    first_error: IndexLoadError | None = None
    for name in candidates:
        try:
            snapshot = _load_generation(index_dir, index_dir / name, fingerprint, dimension)
        except _ModelMismatch as exc:
            raise IndexLoadError(exc.path, exc.detail) from None
        except IndexLoadError as exc:
            first_error = first_error or exc
            log.warning("skipping damaged index generation: %s", exc)
            continue
        if name != current:
            log.warning("%s is damaged (%s); serving the previous generation %s", current, first_error, name)
        return snapshot
    assert first_error is not None
    raise first_error


class _ModelMismatch(IndexLoadError):
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(path, detail)
        self.detail = detail


def _load_generation(index_dir: Path, gen_dir: Path, fingerprint: str, dimension: int) -> Snapshot:
    manifest_path = gen_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexLoadError(manifest_path, "missing; the generation is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(manifest_path, f"damaged manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise IndexLoadError(manifest_path, f"index format {manifest.get('format')} is not {FORMAT}; rebuild")
    model = manifest.get("model", {})
    if model.get("fingerprint") != fingerprint:
        raise _ModelMismatch(
            manifest_path,
            f"built with model {model.get('fingerprint')!r} but the configured model is {fingerprint!r}; "
            "rebuild with `culture-rag build` or configure the original model",
        )
    if model.get("dimension") != dimension:
        raise _ModelMismatch(manifest_path, f"dimension {model.get('dimension')} does not match the model's {dimension}")
    stray = [p for p in gen_dir.rglob("*") if p.suffix.lower() in FORBIDDEN_SUFFIXES]
    if stray:
        raise IndexLoadError(stray[0], "unexpected pickle-like file in the index; refusing to load it")
    _verify_files(gen_dir, manifest.get("files", {}))
    papers, chunks, chunk_papers, sentence_vectors = _load_segments(index_dir, manifest, dimension)
    dense = _read_faiss(gen_dir / "dense.faiss")
    if dense.ntotal != len(chunks) or dense.d != dimension:
        raise IndexLoadError(gen_dir / "dense.faiss", f"{dense.ntotal} vectors for {len(chunks)} chunks; rebuild")
    keyword = KeywordIndex.load(gen_dir / "keyword") if chunks else None
    if keyword is not None and keyword.size != len(chunks):
        raise IndexLoadError(gen_dir / "keyword", f"{keyword.size} keyword documents for {len(chunks)} chunks")
    return Snapshot(
        path=gen_dir,
        generation=int(gen_dir.name.split("-")[1]),
        manifest=manifest,
        papers=tuple(papers),
        chunks=tuple(chunks),
        dense=dense,
        keyword=keyword,
        chunk_papers=tuple(chunk_papers),
        sentence_vectors=sentence_vectors,
        sentence_rows=np.cumsum([0] + [len(c.sentences) for c in chunks]),
    )


def _verify_files(base: Path, checksums: dict[str, str]) -> None:
    for rel, expected in checksums.items():
        path = base / rel
        if not path.is_file():
            raise IndexLoadError(path, "missing file; the index is incomplete")
        if _sha256(path) != expected:
            raise IndexLoadError(path, "checksum mismatch: the file is damaged or was changed")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_faiss(path: Path):
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexLoadError(path, f"cannot read the vector index: {str(exc).splitlines()[0]}") from None


def _load_segments(index_dir: Path, manifest: dict, dimension: int):
    papers, chunks, chunk_papers, sentence_blocks = [], [], [], []
    for number, record in enumerate(manifest.get("papers", [])):
        info = PaperInfo(**{**record, "authors": tuple(record["authors"])})
        seg_dir = index_dir / "segments" / info.segment
        _verify_files(seg_dir, manifest["segments"][info.segment])
        seg_chunks = read_chunks(seg_dir / "chunks.jsonl")
        if len(seg_chunks) != info.n_chunks:
            raise IndexLoadError(seg_dir, f"{len(seg_chunks)} chunks but the manifest says {info.n_chunks}")
        sentences = np.load(seg_dir / "sentences.npy", allow_pickle=False)
        if sentences.shape != (sum(len(c.sentences) for c in seg_chunks), dimension):
            raise IndexLoadError(seg_dir / "sentences.npy", "sentence vectors do not match the chunks; rebuild")
        papers.append(info)
        chunks.extend(seg_chunks)
        chunk_papers.extend([number] * len(seg_chunks))
        sentence_blocks.append(sentences)
    matrix = np.concatenate(sentence_blocks) if sentence_blocks else np.empty((0, dimension), np.float16)
    return papers, chunks, chunk_papers, matrix


def read_chunks(path: Path) -> list[Chunk]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line)
            raw["sentences"] = tuple(Span(*s) for s in raw["sentences"])
            out.append(Chunk(**raw))
    return out


def read_segment_vectors(index_dir: Path, segment: str) -> tuple[np.ndarray, np.ndarray]:
    seg_dir = index_dir / "segments" / segment
    return (
        np.load(seg_dir / "vectors.npy", allow_pickle=False),
        np.load(seg_dir / "sentences.npy", allow_pickle=False),
    )


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
) -> Path:
    """Write every new segment, then a complete generation, then switch CURRENT to it."""
    try:
        for seg in segments:
            _write_segment(index_dir, seg)
        number = int(generations(index_dir)[0].split("-")[1]) + 1 if generations(index_dir) else 1
        final = index_dir / f"gen-{number:06d}"
        tmp = index_dir / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_generation_files(index_dir, tmp, segments, header, number)
        _fsync_dir(tmp)
        os.replace(tmp, final)
        _atomic_write_text(index_dir / CURRENT, final.name + "\n")
    except OSError as exc:
        raise IndexWriteError(
            f"{index_dir}: writing the new index failed ({exc.strerror or exc}); the previous index is still served"
        ) from exc
    _collect_garbage(index_dir, keep)
    return final


def _write_generation_files(index_dir: Path, tmp: Path, segments: list[Segment], header: dict, number: int) -> None:
    import faiss

    chunks = [c for seg in segments for c in seg.chunks]
    dim = header["model"]["dimension"]
    vectors = np.concatenate([s.vectors for s in segments]) if segments else np.zeros((0, dim), np.float32)
    faiss.write_index(build_dense(vectors, dim), str(tmp / "dense.faiss"))
    if chunks:
        KeywordIndex.build([c.embed_text for c in chunks]).save(tmp / "keyword")
    files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        **header,
        "format": FORMAT,
        "generation": number,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_chunks": len(chunks),
        "dense_type": dense_type(len(chunks)),
        "papers": [asdict(s.paper) for s in segments],
        "segments": {s.paper.segment: _segment_checksums(index_dir, s.paper.segment) for s in segments},
        "files": files,
    }
    _atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False))


def dense_type(n: int) -> str:
    return "hnsw" if n > HNSW_THRESHOLD else "flat"


def build_dense(vectors: np.ndarray, dim: int):
    import faiss

    if dense_type(len(vectors)) == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _write_segment(index_dir: Path, seg: Segment) -> None:
    final = index_dir / "segments" / seg.paper.segment
    if final.is_dir():
        return  # segments are immutable and named by content, so an existing one is identical
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for c in seg.chunks:
            row = asdict(c)
            row["sentences"] = [[s.start, s.end, s.page] for s in c.sentences]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    np.save(tmp / "vectors.npy", np.ascontiguousarray(seg.vectors, dtype=np.float32), allow_pickle=False)
    # float16 halves the largest file; sentence scores need no more precision than that.
    np.save(tmp / "sentences.npy", np.ascontiguousarray(seg.sentence_vectors, dtype=np.float16), allow_pickle=False)
    for p in tmp.iterdir():
        _fsync_file(p)
    _fsync_dir(tmp)
    os.replace(tmp, final)


def _segment_checksums(index_dir: Path, segment: str) -> dict[str, str]:
    seg_dir = index_dir / "segments" / segment
    return {name: _sha256(seg_dir / name) for name in ("chunks.jsonl", "vectors.npy", "sentences.npy")}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _collect_garbage(index_dir: Path, keep: int) -> None:
    """Drop generations beyond `keep`, leftovers of killed builds, and unreferenced segments."""
    gens = generations(index_dir)
    for old in gens[keep:]:
        shutil.rmtree(index_dir / old, ignore_errors=True)
    for leftover in list(index_dir.glob("*.tmp-*")) + list((index_dir / "segments").glob("*.tmp-*")):
        if not _pid_alive(leftover.name.rsplit("-", 1)[-1]):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    live: set[str] = set()
    for gen in gens[:keep]:
        with contextlib.suppress(OSError, ValueError):
            live.update(json.loads((index_dir / gen / "manifest.json").read_text()).get("segments", {}))
    for seg_dir in (index_dir / "segments").glob("*"):
        if seg_dir.is_dir() and ".tmp-" not in seg_dir.name and seg_dir.name not in live:
            shutil.rmtree(seg_dir, ignore_errors=True)


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
