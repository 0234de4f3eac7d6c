"""Reading a generation: CURRENT, the manifest and every file it lists, each verified against
its sha256 before it is parsed, and the fallback to an older intact generation."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..dense import build_dense
from ..files import file_sha256
from ..errors import IndexLoadError, IndexModelMismatch
from ..lexical import KeywordIndex, TermCounts, TermFileError
from ..regions import ROLE_CODES, ROLES
from ..types import Chunk, PaperMeta, Span
from . import layout
from .layout import (
    _GEN_NAME,
    _SEGMENT_NAME,
    _SHA256,
    CURRENT,
    FORBIDDEN_SUFFIXES,
    LINES_FILE,
    MANIFEST_DIGEST,
    SEGMENT_FILES,
    PaperInfo,
    Snapshot,
    assemble,
    manifest_digest,
)

log = logging.getLogger(__name__)


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
    if manifest.get("format") == 1 or (intact and manifest.get("format") != layout.FORMAT):
        # An intact manifest of another format (format 1 had no digest) is another version's
        # index, not damage: `build` re-embeds it.
        raise IndexModelMismatch(
            manifest_path, f"written in index format {manifest.get('format')!r}, this version reads {layout.FORMAT}; "
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
    return assemble(gen_dir, manifest, loaded.papers, chunks, dense, keyword, loaded.sentences)


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
                out.append(chunk_of_json(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise IndexLoadError(path, f"malformed chunk on line {number} ({exc})") from None
    return out


def chunk_of_json(line: str) -> Chunk:
    """One chunk record (writing._chunk_record as JSON), its fields checked; raises ValueError,
    KeyError, TypeError or AttributeError when it is malformed."""
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
    return Chunk(**raw, sentences=spans)


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


