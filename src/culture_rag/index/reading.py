"""Reading a generation: CURRENT, the manifest and every file it lists, each verified against
its sha256 before it is parsed, and the fallback to an older intact generation."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from culture_rag.errors import IndexLoadError, IndexModelMismatch
from culture_rag.files import file_sha256
from culture_rag.index import layout
from culture_rag.index.layout import (
    _GEN_NAME,
    _SEGMENT_NAME,
    _SHA256,
    CURRENT,
    FORBIDDEN_SUFFIXES,
    LINES_FILE,
    MANIFEST_DIGEST,
    PART_FILES,
    SEGMENT_FILES,
    PaperInfo,
    digest_matches,
)
from culture_rag.index.lexical import Postings, TermCounts, TermFileError
from culture_rag.index.snapshot import LazyChunks, LocalSnapshot, Part, PaperData, row_arrays, unreadable
from culture_rag.ingest.regions import ROLE_CODES, ROLES
from culture_rag.types import Chunk, PaperMeta, Span

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


def load_snapshot(index_dir: Path, fingerprint: str, dimension: int, fallback: bool = True) -> LocalSnapshot:
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
    intact = digest_matches(manifest)
    if manifest.get("format") == 1 or (intact and manifest.get("format") not in layout.READABLE_FORMATS):
        # An intact manifest of another format (format 1 had no digest) is another version's
        # index, not damage: `build` re-embeds it.
        raise IndexModelMismatch(
            manifest_path, f"written in index format {manifest.get('format')!r}, this version reads "
            f"{' and '.join(map(str, layout.READABLE_FORMATS))}; run `culture-rag build` to index the papers again"
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


def _load_generation(index_dir: Path, gen_dir: Path, fingerprint: str, dimension: int) -> LocalSnapshot:
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
    # Every file in the generation's folder must be covered by a checksum, checked before any
    # parser sees a byte of it (a format-7 HNSW graph is checked and left unread).
    on_disk = {str(p.relative_to(gen_dir)) for p in gen_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    unlisted = sorted(on_disk - set(files))
    if unlisted:
        raise IndexLoadError(gen_dir / unlisted[0], "has no checksum in the manifest; the generation was tampered with")
    _verify_files(gen_dir, files)
    papers = _paper_records(manifest, manifest_path)
    segments = _field(manifest_path, manifest, "segments", dict)
    for paper in papers:
        expected = segments.get(paper.segment)
        if not isinstance(expected, dict) or sorted(expected) != sorted(SEGMENT_FILES):
            raise IndexLoadError(manifest_path, f"damaged manifest: no checksums for segment {paper.segment}")
    reader = _PaperReader(index_dir, segments, papers, dimension)
    if manifest.get("format") == 7:  # every paper a segment part of its own, end to end
        layout_parts = [{"kind": "segment", "id": p.segment, "rows": p.n_chunks} for p in papers]
        placement = [[i, 0] for i in range(len(papers))]
    else:
        layout_parts = _field(manifest_path, manifest, "parts", list)
        placement = _field(manifest_path, manifest, "placement", list)
    parts, seeded = _load_parts(index_dir, manifest, manifest_path, layout_parts, placement, papers, reader, dimension)
    _check_placement(manifest_path, placement, parts, papers)
    if manifest.get("n_chunks", sum(p.n_chunks for p in papers)) != sum(p.n_chunks for p in papers):
        raise IndexLoadError(manifest_path, f"n_chunks is {manifest.get('n_chunks')!r} but the papers hold {sum(p.n_chunks for p in papers)}")
    return LocalSnapshot(gen_dir, manifest, papers, placement, parts, reader, seeded)


def _paper_records(manifest: dict, manifest_path: Path) -> list[PaperInfo]:
    records = manifest.get("papers", [])
    if not isinstance(records, list):
        raise IndexLoadError(manifest_path, "damaged manifest: 'papers' has the wrong type")
    out = []
    for number, record in enumerate(records):
        try:
            found = PaperMeta.from_dict(record["found"]) if record.get("found") is not None else None
            ocr_pages = tuple(record.get("ocr_pages", ()))
            info = PaperInfo(**{**record, "authors": tuple(record["authors"]), "found": found, "ocr_pages": ocr_pages})
        except (TypeError, KeyError, AttributeError) as exc:
            raise IndexLoadError(manifest_path, f"damaged manifest: paper record {number} is malformed ({exc})") from None
        if not (isinstance(info.segment, str) and _SEGMENT_NAME.fullmatch(info.segment)):
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} names segment {info.segment!r}")
        if not isinstance(info.n_chunks, int) or isinstance(info.n_chunks, bool) or info.n_chunks < 0:
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} has n_chunks {info.n_chunks!r}")
        out.append(info)
    return out


def _load_parts(index_dir, manifest, manifest_path, layout_parts, placement, papers, reader, dimension):
    """Each part, verified and opened: a merged part's files mapped, a segment part's paper read."""
    if len(placement) != len(papers):
        raise IndexLoadError(manifest_path, "damaged manifest: 'placement' does not list every paper")
    owner = {}
    for number, place in enumerate(placement):
        if not (isinstance(place, list) and len(place) == 2 and all(type(v) is int for v in place)):
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} has placement {place!r}")
        owner.setdefault(place[0], number)
    part_files = manifest.get("part_files", {})
    parts, seeded = [], {}
    for index, record in enumerate(layout_parts):
        if not (isinstance(record, dict) and record.get("kind") in ("merged", "segment") and isinstance(record.get("id"), str)
                and _SEGMENT_NAME.fullmatch(record["id"]) and type(record.get("rows")) is int):
            raise IndexLoadError(manifest_path, f"damaged manifest: part {index} is malformed")
        if record["kind"] == "merged":
            part = _merged_part(index_dir / "parts" / record["id"], part_files.get(record["id"]), record, dimension)
        else:
            if index not in owner:
                raise IndexLoadError(manifest_path, f"damaged manifest: segment part {index} holds no paper")
            data, terms = reader.read_with_terms(owner[index])
            seeded[owner[index]] = data
            part = segment_part(record["id"], data, terms, dimension)
        if part.size != record["rows"]:
            raise IndexLoadError(index_dir / "parts" / record["id"], f"{part.size} rows but the manifest says {record['rows']}")
        parts.append(part)
    return parts, seeded


def segment_part(segment: str, data: PaperData, terms: TermCounts, dimension: int) -> Part:
    """A paper added since the last merge, searched on its own."""
    from culture_rag.index.dense import build_dense

    return Part("segment", segment, build_dense(data.vectors, dimension), Postings.of_counts(terms), *row_arrays(data.chunks), terms)


def _merged_part(folder: Path, checksums, record: dict, dimension: int) -> Part:
    import faiss

    from culture_rag.index.dense import part_type

    if not isinstance(checksums, dict) or sorted(checksums) != sorted(PART_FILES):
        raise IndexLoadError(folder, "damaged manifest: no checksums for this part")
    _refuse_pickles(folder)
    _verify_files(folder, checksums)
    try:
        # Mapped, not read: an inverted file's lists (IO_FLAG_MMAP), a flat index's vectors
        # (IO_FLAG_MMAP_IFC); faiss refuses the two flags together.
        flag = faiss.IO_FLAG_MMAP if part_type(record["rows"]) == "ivf" else faiss.IO_FLAG_MMAP_IFC
        dense = faiss.read_index(str(folder / "dense.faiss"), flag)
        postings = Postings.load(folder)
        kinds = np.load(folder / "kinds.npy", allow_pickle=False, mmap_mode="r")
        hashes = np.load(folder / "hashes.npy", allow_pickle=False, mmap_mode="r")
        starts = np.load(folder / "sentence_starts.npy", allow_pickle=False, mmap_mode="r")
    except TermFileError as exc:
        raise IndexLoadError(exc.path, exc.detail) from None
    except (RuntimeError, ValueError, OSError) as exc:
        raise unreadable(folder, exc) from None
    rows = record["rows"]
    shapes = {kinds.shape, hashes.shape, starts.shape}
    if dense.d != dimension or dense.ntotal != rows or shapes != {(rows,)} or postings.size != rows:
        raise IndexLoadError(folder, f"files that do not hold {rows} rows of dimension {dimension}; rebuild with `culture-rag build`")
    if kinds.dtype != np.uint8 or hashes.dtype != np.uint64 or starts.dtype != np.uint32:
        raise IndexLoadError(folder, "kinds, hashes or sentence_starts of the wrong type; rebuild with `culture-rag build`")
    return Part("merged", record["id"], dense, postings, kinds, hashes, starts)


def _check_placement(manifest_path: Path, placement: list, parts: list[Part], papers: list[PaperInfo]) -> None:
    for number, ((index, local), paper) in enumerate(zip(placement, papers)):
        if not (0 <= index < len(parts) and 0 <= local and local + paper.n_chunks <= parts[index].size):
            raise IndexLoadError(manifest_path, f"damaged manifest: paper {number} lies outside its part")


class _PaperReader:
    """A paper's segment files, verified against the manifest and parsed, on demand."""

    def __init__(self, index_dir: Path, segments: dict, papers: list[PaperInfo], dimension: int) -> None:
        self.index_dir, self.segments, self.papers, self.dimension = index_dir, segments, papers, dimension

    def _files(self, number: int, names: tuple[str, ...]) -> tuple[PaperInfo, Path]:
        paper = self.papers[number]
        seg_dir = self.index_dir / "segments" / paper.segment
        expected = self.segments[paper.segment]
        _refuse_pickles(seg_dir)
        _verify_files(seg_dir, {name: expected[name] for name in names})
        return paper, seg_dir

    def read(self, number: int) -> PaperData:
        with _rebuild_advice():
            paper, seg_dir = self._files(number, ("chunks.jsonl", "vectors.npy", "sentences.npy"))
            path = seg_dir / "chunks.jsonl"
            records = chunk_records(path)
            if len(records) != paper.n_chunks:
                raise IndexLoadError(seg_dir, f"{len(records)} chunks but the manifest says {paper.n_chunks}")
            vectors = _load_array(seg_dir / "vectors.npy", len(records), self.dimension)
            sentences = _load_array(seg_dir / "sentences.npy", None, self.dimension)  # sentence_matrix checks its rows

            def parse(i: int, raw: dict) -> Chunk:
                chunk = chunk_of(raw, path, i + 1)
                return chunk if chunk.paper_id == paper.paper_id else replace(chunk, paper_id=paper.paper_id)

            return PaperData(LazyChunks(records, parse), vectors, sentences.astype(np.float16, copy=False))

    def terms(self, number: int) -> TermCounts:
        with _rebuild_advice():
            paper, seg_dir = self._files(number, ("terms.npz",))
            try:
                return TermCounts.load(seg_dir / "terms.npz", paper.n_chunks)
            except TermFileError as exc:
                raise IndexLoadError(exc.path, exc.detail) from None

    def read_with_terms(self, number: int) -> tuple[PaperData, TermCounts]:
        return self.read(number), self.terms(number)


@contextlib.contextmanager
def _rebuild_advice():
    """A file read after opening fails a query rather than the load, so its error says what to do."""
    try:
        yield
    except IndexLoadError as exc:
        if "culture-rag build" in exc.detail:
            raise
        raise IndexLoadError(exc.path, f"{exc.detail}; rebuild the index with `culture-rag build`") from None


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


def _load_array(path: Path, rows: int | None, dimension: int, mmap: bool = False) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:  # object arrays (pickles) end here too
        raise IndexLoadError(path, f"not a plain numeric array ({exc})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise IndexLoadError(path, "not an array of floating-point vectors")
    if array.ndim != 2 or array.shape[1] != dimension or (rows is not None and array.shape[0] != rows):
        raise IndexLoadError(path, f"shape {array.shape} does not match {rows if rows is not None else 'rows'} of dimension {dimension}")
    return array


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
    return [chunk_of(raw, path, number) for number, raw in enumerate(chunk_records(path), start=1)]


def chunk_records(path: Path) -> list[bytes]:
    """The chunk records of a chunks.jsonl, one line each, unparsed: a query makes Chunks of only
    the records it uses (chunk_of)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IndexLoadError(path, f"cannot read it ({exc.strerror or exc})") from None
    return data.splitlines() if data else []


def chunk_of(record: bytes, path: Path, number: int) -> Chunk:
    """A chunk record parsed and checked field by field, as a Chunk (`number`: its line)."""
    try:
        raw = json.loads(record)
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
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise IndexLoadError(path, f"malformed chunk on line {number} ({exc}); rebuild with `culture-rag build`") from None


def read_lines(index_dir: Path, manifest: dict, paper: PaperInfo) -> np.ndarray:
    """A paper's line anchors (rows of paper offset, page, page-text offset), checked against the
    manifest's checksum before numpy parses them. Read on demand: a query never needs them."""
    seg_dir = index_dir / "segments" / paper.segment
    expected = manifest.get("segments", {}).get(paper.segment, {})
    if not isinstance(expected, dict) or LINES_FILE not in expected:
        raise IndexLoadError(seg_dir, "no checksum for lines.npy in the manifest; rebuild with `culture-rag build`")
    with _rebuild_advice():
        _verify_files(seg_dir, {LINES_FILE: expected[LINES_FILE]})
    try:
        lines = np.load(seg_dir / LINES_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexLoadError(seg_dir / LINES_FILE, f"unreadable ({exc}); rebuild with `culture-rag build`") from None
    if lines.ndim != 2 or lines.shape[1] != 3 or not np.issubdtype(lines.dtype, np.integer):
        raise IndexLoadError(seg_dir / LINES_FILE, f"shape {lines.shape} {lines.dtype}, not rows of 3 integers; rebuild")
    return lines


