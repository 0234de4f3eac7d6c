"""Writing a generation: new segments, the parts a merge makes, then the generation's manifest
(written here and only here), then CURRENT switched to it; and the garbage collection of what
no kept generation names. Every file is written to a temporary name, synced, then renamed.

The merge policy keeps opening and adding cheap, as an LSM tree does: a new paper is a segment
part of its own, searched exactly; once there are more than MAX_SEGMENT_PARTS of them (or
MAX_SEGMENT_ROWS rows) they are merged into one part, merged parts beyond MAX_MERGED_PARTS are
merged smallest first, and a part whose rows are mostly of removed papers is merged to drop
them. A large part is thus rewritten only when parts of its own size accumulate."""

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from culture_rag.embed.quantize import int8_kernels
from culture_rag.errors import IndexLoadError, IndexWriteError
from culture_rag.files import file_sha256, replacing, write_text
from culture_rag.index import layout
from culture_rag.index.dense import build_dense, part_vectors
from culture_rag.index.layout import (
    CURRENT,
    LINES_FILE,
    MANIFEST_DIGEST,
    PART_FILES,
    SEGMENT_FILES,
    KeptPaper,
    ModelInfo,
    PaperInfo,
    Segment,
    canonical_json,
    digest_of,
    library_versions,
)
from culture_rag.index.lexical import Postings, TermCounts
from culture_rag.index.reading import _PaperReader, generations, read_current, segment_part
from culture_rag.index.snapshot import LocalSnapshot, Part, paper_data, row_arrays
from culture_rag.ingest.regions import ROLE_CODES
from culture_rag.types import Chunk

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
    def of(cls, snapshot) -> Stamp:
        manifest = snapshot.manifest
        return cls(ModelInfo.from_manifest(manifest), dict(manifest.get("settings", {})), manifest.get("corpus_dir", ""))


MAX_SEGMENT_PARTS = 32
MAX_SEGMENT_ROWS = 20_000
MAX_MERGED_PARTS = 8
MIN_LIVE_FRACTION = 0.5


def write_generation(
    index_dir: Path, papers: Sequence[Written], stamp: Stamp, keep: int, previous: LocalSnapshot | None = None
) -> LocalSnapshot:
    """Write every new segment and the parts the merge policy makes, then a generation's
    manifest, then switch CURRENT to it; returns the new generation, opened. Kept papers are
    `previous`'s: their segments stay, and so do their parts unless a merge takes them."""
    numbers = {p.paper_id: n for n, p in enumerate(previous.papers)} if previous is not None else {}
    if any(isinstance(p, KeptPaper) and p.paper.paper_id not in numbers for p in papers):
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
        plan = _Plan.of(papers, previous, numbers, stamp.model.dimension)
        fresh = {part.id for part in plan.new_merged}
        part_files = {part.id: previous.manifest["part_files"][part.id]
                      for part in plan.parts if part.kind == "merged" and part.id not in fresh}
        for part in plan.new_merged:
            part_files[part.id] = _write_part(index_dir, part)
        number = int(generations(index_dir)[0].split("-")[1]) + 1 if generations(index_dir) else 1
        final = index_dir / f"gen-{number:06d}"
        with replacing(final, folder=True) as tmp:
            manifest = _write_manifest(tmp, papers, stamp, number, checksums, plan, part_files, previous, numbers)
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
        known = {final.name: manifest} | ({previous.path.name: previous.manifest} if previous is not None else {})
        _collect_garbage(index_dir, keep, known)
    except OSError as exc:  # the new index is live; leftovers are collected by the next write
        log.warning("%s: could not remove old index files (%s)", index_dir, exc)
    return _opened(index_dir, final, manifest, papers, plan, stamp.model.dimension)


def _opened(index_dir: Path, final: Path, manifest: dict, papers: Sequence[Written], plan: _Plan, dim: int) -> LocalSnapshot:
    infos = [p.paper for p in papers]
    reader = _PaperReader(index_dir, manifest["segments"], infos, dim)
    seeded = {n: paper_data(p.chunks, p.vectors, p.sentence_vectors) for n, p in enumerate(papers) if isinstance(p, Segment)}
    return LocalSnapshot(final, manifest, infos, plan.placement, plan.parts, reader, seeded)


@dataclass
class _Plan:
    """The parts of the next generation, in row order, and where each paper lies in them."""

    parts: list[Part]
    placement: list[tuple[int, int]]  # per paper: (part index, first row in it)
    new_merged: list[Part]

    @classmethod
    def of(cls, papers: Sequence[Written], previous: LocalSnapshot | None, numbers: dict[str, int], dim: int) -> _Plan:
        groups: dict[int, list[int]] = {}  # previous part index -> our papers placed in it
        new: list[int] = []
        for n, item in enumerate(papers):
            if isinstance(item, KeptPaper):
                groups.setdefault(previous.placement[numbers[item.paper.paper_id]][0], []).append(n)
            else:
                new.append(n)
        old_parts = [part for part, _ in previous.parts] if previous is not None else []
        merged = [i for i in sorted(groups) if old_parts[i].kind == "merged"]
        # Parts of one paper each: (the previous part, or None for a new paper; our papers in it)
        singles = [(old_parts[i], groups[i]) for i in sorted(groups) if old_parts[i].kind == "segment"]
        singles += [(None, [n]) for n in new]
        to_merge: list[int] = []  # our papers to fold into one new part
        single_rows = sum(papers[ns[0]].paper.n_chunks for _, ns in singles)
        if previous is None or len(singles) > MAX_SEGMENT_PARTS or single_rows > MAX_SEGMENT_ROWS:
            to_merge += [n for _, ns in singles for n in ns]
            singles = []
        live = {i: sum(papers[n].paper.n_chunks for n in groups[i]) for i in merged}
        taken = [i for i in merged if live[i] < MIN_LIVE_FRACTION * old_parts[i].size]  # mostly removed papers'
        kept = [i for i in merged if i not in taken]
        while kept and len(kept) + (1 if to_merge or taken else 0) > MAX_MERGED_PARTS:
            smallest = min(kept, key=lambda i: old_parts[i].size)
            kept.remove(smallest)
            taken.append(smallest)
        to_merge = sorted(to_merge + [n for i in taken for n in groups[i]])
        plan = cls([], [(0, 0)] * len(papers), [])
        for i in kept:
            plan.parts.append(old_parts[i])
            for n in groups[i]:  # where it lay in that part
                plan.placement[n] = (len(plan.parts) - 1, previous.placement[numbers[papers[n].paper.paper_id]][1])
        if to_merge:
            part = _merge([_material(papers[n], previous, numbers) for n in to_merge], [papers[n].paper for n in to_merge], dim)
            plan.parts.append(part)
            plan.new_merged.append(part)
            local = 0
            for n in to_merge:
                plan.placement[n] = (len(plan.parts) - 1, local)
                local += papers[n].paper.n_chunks
        for old, ns in singles:
            plan.parts.append(old if old is not None else _single(papers[ns[0]], dim))
            for n in ns:
                plan.placement[n] = (len(plan.parts) - 1, 0)
        return plan


@dataclass(frozen=True)
class _Material:
    vectors: np.ndarray
    terms: TermCounts
    kinds: np.ndarray
    hashes: np.ndarray
    sentence_starts: np.ndarray


def _single(segment: Segment, dim: int) -> Part:
    return segment_part(segment.paper.segment, paper_data(segment.chunks, segment.vectors, segment.sentence_vectors), segment.terms, dim)


def _material(item: Written, previous: LocalSnapshot | None, numbers: dict[str, int]) -> _Material:
    """A paper's vectors, term counts, passage kinds and chunk hashes, for a merge: a new
    paper's from memory, a kept one's from its part, or its segment's files (verified)."""
    if isinstance(item, Segment):
        return _Material(np.asarray(item.vectors, np.float32), item.terms, *row_arrays(item.chunks))
    number = numbers[item.paper.paper_id]
    index, local = previous.placement[number]
    part, n = previous.parts[index][0], item.paper.n_chunks
    if part.kind == "segment":
        return _Material(part_vectors(part.dense), part.terms, np.asarray(part.kinds), np.asarray(part.hashes), np.asarray(part.sentence_starts))
    vectors = np.asarray(previous.paper_data(number).vectors, np.float32)
    terms = previous.reader.terms(number)
    rows = slice(local, local + n)
    return _Material(vectors, terms, np.array(part.kinds[rows]), np.array(part.hashes[rows]), np.array(part.sentence_starts[rows]))


def _merge(materials: list[_Material], papers: list[PaperInfo], dim: int) -> Part:
    identity = json.dumps([[p.segment, p.n_chunks] for p in papers] + [layout.FORMAT])
    part_id = hashlib.sha256(identity.encode()).hexdigest()[:24]
    vectors = np.concatenate([m.vectors for m in materials]) if materials else np.zeros((0, dim), np.float32)
    postings = Postings.of_counts(TermCounts.concat([m.terms for m in materials]))
    kinds = np.concatenate([m.kinds for m in materials]).astype(np.uint8)
    hashes = np.concatenate([m.hashes for m in materials]).astype(np.uint64)
    starts = np.concatenate([m.sentence_starts for m in materials]).astype(np.uint32)
    return Part("merged", part_id, build_dense(vectors, dim), postings, kinds, hashes, starts)


def _write_part(index_dir: Path, part: Part) -> dict[str, str]:
    """A merged part's folder, written once (parts are named by content); its checksums."""
    import faiss

    final = index_dir / "parts" / part.id
    if not (final.is_dir() and all((final / name).is_file() for name in PART_FILES)):
        if final.is_dir():
            shutil.rmtree(final)  # half deleted by a killed garbage collection
        final.parent.mkdir(parents=True, exist_ok=True)
        with replacing(final, folder=True) as tmp:
            # Written from Python, not faiss's C++ writer: a full disk or a file-size limit is then an
            # OSError that says so, rather than faiss's count of bytes written.
            with open(tmp / "dense.faiss", "wb") as out:
                out.write(faiss.serialize_index(part.dense).data)
            part.postings.save(tmp)
            np.save(tmp / "kinds.npy", np.ascontiguousarray(part.kinds, np.uint8), allow_pickle=False)
            np.save(tmp / "hashes.npy", np.ascontiguousarray(part.hashes, np.uint64), allow_pickle=False)
            np.save(tmp / "sentence_starts.npy", np.ascontiguousarray(part.sentence_starts, np.uint32), allow_pickle=False)
    return {name: file_sha256(final / name) for name in PART_FILES}


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



def _int8_families(fingerprint: str, papers: Sequence[Written], previous: LocalSnapshot | None) -> list[str] | None:
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


def stamp_record(stamp: Stamp, papers: Sequence[Written], previous, generation: int) -> dict:
    """What every store's manifest says first: model, settings, libraries, corpus, format, when."""
    model = {
        "id": stamp.model.id,
        "fingerprint": stamp.model.fingerprint,
        "dimension": stamp.model.dimension,
        "max_tokens": stamp.model.max_tokens,
    }
    families = _int8_families(stamp.model.fingerprint, papers, previous)
    return {
        "model": model if families is None else {**model, "int8_kernels": families},
        "settings": dict(stamp.settings),
        "libraries": library_versions(),
        "corpus_dir": stamp.corpus_dir,
        "format": layout.FORMAT,
        "generation": generation,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_chunks": sum(p.paper.n_chunks for p in papers),
    }


def _write_manifest(
    tmp: Path, papers: Sequence[Written], stamp: Stamp, number: int, checksums: dict, plan: _Plan, part_files: dict,
    previous: LocalSnapshot | None, numbers: dict[str, int],
) -> dict:
    """The generation's manifest, of which this is the only author."""
    manifest = {
        **stamp_record(stamp, papers, previous, number),
        "papers": _records(papers, previous, numbers),
        "placement": [list(place) for place in plan.placement],
        "parts": [{"kind": part.kind, "id": part.id, "rows": part.size} for part in plan.parts],
        "part_files": part_files,
        "segments": {p.paper.segment: checksums[p.paper.segment] for p in papers},
        "files": {},
    }
    # The canonical form the digest is taken over is the file itself, digest last: one encoding
    # of 12k papers instead of two (no indent: that falls back to the pure-Python encoder).
    canonical = canonical_json(manifest)
    manifest[MANIFEST_DIGEST] = digest_of(canonical)
    with replacing(tmp / "manifest.json") as out:
        out.write_bytes(canonical[:-1] + f',"{MANIFEST_DIGEST}":"{manifest[MANIFEST_DIGEST]}"}}'.encode())
    return manifest


def _records(papers: Sequence[Written], previous: LocalSnapshot | None, numbers: dict[str, int]) -> list[dict]:
    """Each paper's manifest record; a kept paper's unchanged record is the previous manifest's."""
    out = []
    for item in papers:
        number = numbers.get(item.paper.paper_id) if isinstance(item, KeptPaper) else None
        same = number is not None and (previous.papers[number] is item.paper or previous.papers[number] == item.paper)
        out.append(previous.manifest["papers"][number] if same else _record(item.paper))
    return out


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


def _collect_garbage(index_dir: Path, keep: int, known: dict[str, dict] | None = None) -> None:
    """Drop generations beyond `keep`, leftovers of killed builds, and unreferenced segments and
    parts. `known` are manifests in memory by generation name (at 40k papers a manifest is
    20 MB of JSON: parsing the kept ones again cost more than the rest of an add)."""
    gens = generations(index_dir)
    for old in gens[keep:]:
        _remove_aside(index_dir / old)
    leftovers = [folder / name for folder in (index_dir, index_dir / "segments", index_dir / "parts")
                 for name in _names(folder) if ".tmp-" in name]
    for leftover in leftovers:
        if not _pid_alive(leftover.name.rsplit("-", 1)[-1]):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    live: set[str] = set()
    for gen in gens[:keep]:
        try:
            manifest = (known or {}).get(gen) or json.loads((index_dir / gen / "manifest.json").read_text())
            live.update(manifest.get("segments", {}))
            live.update(part["id"] for part in manifest.get("parts", []) if part.get("kind") == "merged")
        except (OSError, ValueError, AttributeError, TypeError, KeyError):
            return  # a kept generation we cannot read may still need its files: delete none
    # Names only (os.listdir): at 12k papers, pathlib's glob and a stat per folder cost 0.2 s a write.
    for kind in ("segments", "parts"):
        for name in _names(index_dir / kind):
            if ".tmp-" not in name and name not in live:
                _remove_aside(index_dir / kind / name)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


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
