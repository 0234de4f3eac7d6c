"""Writing a generation: new segments, then the generation's manifest (written here and only
here) and dense graph, then CURRENT switched to it; and the garbage collection of what no kept
generation names. Every file is written to a temporary name, synced, then renamed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..types import Chunk
from ..dense import build_dense, dense_type, extend_dense, stored_vectors
from ..backend.quantize import int8_kernels
from ..files import file_sha256, replacing, write_text
from ..errors import IndexLoadError, IndexWriteError
from ..lexical import KeywordIndex, TermCounts
from ..regions import ROLE_CODES
from . import layout
from .layout import (
    CURRENT,
    LINES_FILE,
    MANIFEST_DIGEST,
    SEGMENT_FILES,
    KeptPaper,
    ModelInfo,
    PaperInfo,
    Segment,
    Snapshot,
    assemble,
    library_versions,
    manifest_digest,
)
from .reading import generations, read_current

log = logging.getLogger(__name__)

Written = Segment | KeptPaper


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


@dataclass(frozen=True)
class Stamp:
    """What a generation records of where it came from, besides its papers."""

    model: ModelInfo
    settings: Mapping[str, str]
    corpus_dir: str

    @classmethod
    def of(cls, snapshot: Snapshot) -> Stamp:
        manifest = snapshot.manifest
        return cls(ModelInfo.from_manifest(manifest), dict(manifest.get("settings", {})), manifest.get("corpus_dir", ""))


def write_generation(
    index_dir: Path, papers: Sequence[Written], stamp: Stamp, keep: int, previous: Snapshot | None = None
) -> Snapshot:
    """Write every new segment, then a generation (its manifest, plus the graph when the dense
    index is HNSW), then switch CURRENT to it; returns the new generation, assembled in memory.
    Kept papers are `previous`'s: their segments stay, and when they come first, in its order,
    its dense and keyword indexes are extended by the new papers rather than rebuilt, so adding
    a paper costs about that paper, not the whole index."""
    rows = previous.rows() if previous is not None else {}
    if any(isinstance(p, KeptPaper) and p.paper.paper_id not in rows for p in papers):
        raise ValueError("a kept paper must be a paper of the previous generation")
    known_checksums = previous.manifest.get("segments", {}) if previous is not None else {}
    final = None
    try:
        checksums = {}
        for item in papers:
            segment = item.paper.segment
            known = known_checksums.get(segment)
            if isinstance(item, KeptPaper):  # on disk, and kept there: the live generation names it
                checksums[segment] = known
                continue
            wrote = _write_segment(index_dir, item)
            checksums[segment] = known if known and not wrote else _segment_checksums(index_dir, segment)
        dense, keyword = _search_indexes(papers, stamp.model.dimension, previous, rows)
        number = int(generations(index_dir)[0].split("-")[1]) + 1 if generations(index_dir) else 1
        final = index_dir / f"gen-{number:06d}"
        with replacing(final, folder=True) as tmp:
            manifest = _write_generation_files(tmp, papers, stamp, number, checksums, dense, previous)
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
    return _assembled(final, manifest, papers, dense, keyword, previous, rows)


def _assembled(final: Path, manifest: dict, papers: Sequence[Written], dense, keyword, previous, rows) -> Snapshot:
    """The new generation in memory: kept papers' chunks and sentence vectors are `previous`'s."""
    chunks, blocks = [], []
    for item in papers:
        if isinstance(item, KeptPaper):
            number, a, b = rows[item.paper.paper_id]
            chunks.extend(previous.chunks[a:b])
            blocks.append(previous.sentence_blocks[number])
        else:
            chunks.extend(item.chunks)
            blocks.append(item.sentence_vectors.astype(np.float16, copy=False))  # as loading gives them
    return assemble(final, manifest, [p.paper for p in papers], chunks, dense, keyword, blocks)


def _search_indexes(papers: Sequence[Written], dim: int, previous: Snapshot | None, rows: dict):
    """(dense, keyword) for `papers`: the previous generation's extended by the new papers when
    those come after all of its own, in its order; built from every paper otherwise."""
    import faiss

    old = len(previous.papers) if previous is not None else 0
    extends = (
        previous is not None
        and previous.keyword is not None
        and len(papers) >= old
        and all(isinstance(s, KeptPaper) and s.paper.paper_id == p.paper_id for s, p in zip(papers, previous.papers))
        and not any(isinstance(s, KeptPaper) for s in papers[old:])
        # the type the new size calls for, checked on the index itself (the threshold may differ)
        and isinstance(previous.dense, faiss.IndexHNSW) == (dense_type(sum(s.paper.n_chunks for s in papers)) == "hnsw")
    )
    if extends:
        new = papers[old:]
        vectors = np.concatenate([s.vectors for s in new]) if new else np.zeros((0, dim), np.float32)
        keyword = previous.keyword.appended(TermCounts.concat([s.terms for s in new])) if new else previous.keyword
        return extend_dense(previous.dense, vectors, dim), keyword
    vectors, terms = _every_vector(papers, dim, previous, rows)
    return build_dense(vectors, dim), (KeywordIndex.of_counts(terms) if len(vectors) else None)


def _every_vector(papers: Sequence[Written], dim: int, previous: Snapshot | None, rows: dict):
    """All vectors and term counts of `papers`, in order: kept papers' from `previous`."""
    held = stored_vectors(previous.dense) if any(isinstance(p, KeptPaper) for p in papers) else None
    vectors, terms = [], []
    for item in papers:
        if isinstance(item, KeptPaper):
            _, a, b = rows[item.paper.paper_id]
            vectors.append(held[a:b])
            terms.append(previous.keyword.counts(a, b))
        else:
            vectors.append(item.vectors)
            terms.append(item.terms)
    return (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), TermCounts.concat(terms) if terms else None


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



def _int8_families(fingerprint: str, papers: Sequence[Written], previous: Snapshot | None) -> list[str] | None:
    """int8 passage vectors record the int8 kernel families (embedding.int8_kernels) of the CPUs
    that embedded them. The fingerprint's quantization scheme sums its int8 products exactly on
    every family (only fp32 rounding differs), so a machine of another family may add papers:
    its vectors are compatible, and its family joins the list. Kept papers keep their families; a
    rebuild that re-embeds everything drops them."""
    if "+onnx-int8" not in fingerprint:
        return None
    kept = any(isinstance(p, KeptPaper) for p in papers)
    families = set(previous.manifest["model"].get("int8_kernels", [])) if previous is not None and kept else set()
    if not kept or any(isinstance(p, Segment) for p in papers) or not families:
        families.add(int8_kernels())
    return sorted(families)


def _write_generation_files(
    tmp: Path, papers: Sequence[Written], stamp: Stamp, number: int, checksums: dict, dense, previous: Snapshot | None
) -> dict:
    """The generation's files: the HNSW graph when there is one, and its manifest, of which this
    is the only author."""
    import faiss

    n_chunks = sum(p.paper.n_chunks for p in papers)
    if dense_type(n_chunks) == "hnsw":  # a flat index is rebuilt from the segments' vectors on load
        faiss.write_index(dense, str(tmp / "dense.faiss"))
    files = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    model = {
        "id": stamp.model.id,
        "fingerprint": stamp.model.fingerprint,
        "dimension": stamp.model.dimension,
        "max_tokens": stamp.model.max_tokens,
    }
    families = _int8_families(stamp.model.fingerprint, papers, previous)
    manifest = {
        "model": model if families is None else {**model, "int8_kernels": families},
        "settings": dict(stamp.settings),
        "libraries": library_versions(),
        "corpus_dir": stamp.corpus_dir,
        "format": layout.FORMAT,
        "generation": number,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_chunks": n_chunks,
        "dense_type": dense_type(n_chunks),
        "papers": [_record(p.paper) for p in papers],
        "segments": {p.paper.segment: checksums[p.paper.segment] for p in papers},
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


def _write_segment(index_dir: Path, seg: Segment) -> bool:
    """Write a segment unless it is on disk already; True when it was written."""
    final = index_dir / "segments" / seg.paper.segment
    if final.is_dir() and all((final / name).is_file() for name in SEGMENT_FILES):
        return False  # segments are immutable and named by content, so a complete one is identical
    if final.is_dir():
        # Half deleted by a garbage collection that was killed: reusing it would fail every
        # later write of this paper, so it is written again.
        shutil.rmtree(final)
    with replacing(final, folder=True) as tmp:
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in seg.chunks:
                fh.write(json.dumps(_chunk_record(c), ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", np.ascontiguousarray(seg.vectors, dtype=np.float32), allow_pickle=False)
        # float16 halves the largest file; sentence scores need no more precision than that.
        np.save(tmp / "sentences.npy", np.ascontiguousarray(seg.sentence_vectors, dtype=np.float16), allow_pickle=False)
        seg.terms.save(tmp / "terms.npz")
        np.save(tmp / LINES_FILE, np.ascontiguousarray(seg.lines, dtype=np.int32).reshape(-1, 3), allow_pickle=False)
    return True


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
