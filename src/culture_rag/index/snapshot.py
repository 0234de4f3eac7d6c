"""A local generation opened on demand: its parts (dense index, keyword postings, passage kinds
and chunk-id hashes) are in memory or memory-mapped, and a paper's chunks and vectors are read
from its segment, verified, when a query first touches that paper."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from culture_rag.errors import IndexLoadError
from culture_rag.index.dense import search_parts
from culture_rag.index.layout import FORMAT
from culture_rag.index.lexical import KeywordIndex, Postings, TermCounts
from culture_rag.ingest.chunking import passage_kind
from culture_rag.types import Chunk, PaperInfo

CACHED_PAPERS = 256  # papers whose chunks and vectors stay parsed: the working set of recent questions


def chunk_hash(chunk_id: str) -> int:
    """A chunk id as 64 bits, for the per-part lookup table (a match is confirmed on the chunk)."""
    return int.from_bytes(hashlib.sha256(chunk_id.encode("utf-8")).digest()[:8], "little")


def row_arrays(chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a part keeps per row of these chunks: passage kind, chunk-id hash, first sentence."""
    kinds = np.fromiter((passage_kind(c) for c in chunks), np.uint8, count=len(chunks))
    hashes = np.fromiter((chunk_hash(c.chunk_id) for c in chunks), np.uint64, count=len(chunks))
    return kinds, hashes, sentence_starts(chunks)


@dataclass(frozen=True)
class Part:
    """A run of rows searched as one: a merged part (its own folder) or one paper's segment.
    `terms` (term counts by row) is kept for a segment part only, which a merge folds in."""

    kind: str  # "merged" or "segment"
    id: str
    dense: object  # faiss.Index
    postings: Postings
    kinds: np.ndarray  # uint8 per row (chunking.passage_kind)
    hashes: np.ndarray  # uint64 per row (chunk_hash)
    sentence_starts: np.ndarray  # uint32 per row: its first sentence's row in its paper's sentences.npy
    terms: TermCounts | None = None

    @property
    def size(self) -> int:
        return len(self.kinds)

    @cached_property
    def _by_hash(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows in hash order, the hashes in that order), made once: a lookup then sorts nothing."""
        order = np.argsort(self.hashes, kind="stable")
        return order, np.asarray(self.hashes)[order]

    def rows_of_hash(self, value: int) -> np.ndarray:
        order, sorted_hashes = self._by_hash
        lo, hi = np.searchsorted(sorted_hashes, np.uint64(value), "left"), np.searchsorted(sorted_hashes, np.uint64(value), "right")
        return order[lo:hi]


@dataclass(frozen=True)
class PaperData:
    """One paper's chunks and vectors as its segment holds them."""

    chunks: Sequence[Chunk]
    vectors: np.ndarray
    sentences: np.ndarray  # float16, one row per sentence, chunk by chunk


def paper_data(chunks: Sequence[Chunk], vectors: np.ndarray, sentences: np.ndarray) -> PaperData:
    return PaperData(tuple(chunks), vectors, sentences.astype(np.float16, copy=False))


def sentence_starts(chunks: Sequence[Chunk]) -> np.ndarray:
    """Each chunk's first sentence in its paper's sentence vectors (one row per sentence, chunk by chunk)."""
    counts = [len(c.sentences) for c in chunks]
    return np.cumsum([0] + counts[:-1]).astype(np.uint32) if counts else np.zeros(0, np.uint32)


class LazyChunks(Sequence):
    """A paper's chunk records, each made a Chunk (checked field by field) when first asked for:
    a search uses a few chunks of each paper it touches, and parsing all of them cost 6 ms a paper
    (the records are read as lines, each parsed when first asked for)."""

    def __init__(self, records: list, parse) -> None:
        self._items, self._parse = list(records), parse

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        item = self._items[i]
        if not isinstance(item, Chunk):
            # Two threads may parse the same record at once; both get equal chunks.
            item = self._items[i] = self._parse(i % len(self._items), item)
        return item


class _PaperCache:
    """The papers read most recently, at most CACHED_PAPERS, shared by a snapshot's threads."""

    def __init__(self, read, seeded: dict[int, PaperData] | None = None) -> None:
        self._read, self._lock = read, threading.Lock()
        self._held: OrderedDict[int, PaperData] = OrderedDict(seeded or {})

    def get(self, number: int) -> PaperData:
        with self._lock:
            data = self._held.get(number)
            if data is not None:
                self._held.move_to_end(number)
                return data
        data = self._read(number)  # outside the lock: reading one paper must not hold up others
        with self._lock:
            self._held[number] = data
            while len(self._held) > CACHED_PAPERS:
                self._held.popitem(last=False)
        return data


class ChunkTable(Sequence):
    """snapshot.chunks: a chunk by row, or a paper's run of rows, read when asked for."""

    def __init__(self, snapshot: LocalSnapshot) -> None:
        self._snapshot = snapshot

    def __len__(self) -> int:
        return self._snapshot.size

    def __iter__(self):
        """Every chunk in row order (rows of removed papers have none)."""
        snapshot = self._snapshot
        for number in snapshot._order:
            yield from snapshot.paper_data(int(number)).chunks

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        number, local = self._snapshot.locate(int(row))
        return self._snapshot.paper_data(number).chunks[local]


class LocalSnapshot:
    """One generation of a local index, opened (index.layout.Snapshot)."""

    def __init__(
        self,
        path: Path,
        manifest: dict,
        papers: Sequence[PaperInfo],
        placement: Sequence[tuple[int, int]],
        parts: Sequence[Part],
        reader,
        seeded: dict[int, PaperData] | None = None,
    ) -> None:
        self.path, self.manifest = path, manifest
        self.generation = int(path.name.split("-")[1])
        self.papers = tuple(papers)
        self.placement = tuple(tuple(place) for place in placement)  # per paper: (part index, first row within the part)
        offsets = np.cumsum([0] + [part.size for part in parts]).astype(np.int64)
        self.parts = tuple((part, int(offsets[i])) for i, part in enumerate(parts))  # (part, first row), in row order
        self.starts = np.array([offsets[i] + local for i, local in self.placement], np.int64)
        self.reader = reader  # read(number) -> PaperData, terms(number) -> TermCounts, verified
        self.size = max((start + part.size for part, start in self.parts), default=0)
        self._ends = self.starts + np.array([p.n_chunks for p in self.papers], np.int64)
        self._order = np.argsort(self.starts, kind="stable")
        self._sorted_starts = self.starts[self._order]  # for locate(), a hot path: sorted once
        self._cache = _PaperCache(reader.read, seeded)
        self.chunks = ChunkTable(self)
        live = sum(p.n_chunks for p in self.papers)
        self._live = None if live == self.size else _ranges(self.starts, self._ends)
        self._kinds = np.concatenate([p.kinds for p, _ in self.parts]) if self.parts else np.zeros(0, np.uint8)
        self._sentence_starts = np.concatenate([p.sentence_starts for p, _ in self.parts]) if self.parts else np.zeros(0, np.uint32)

    @property
    def corpus_dir(self) -> str | None:
        return self.manifest.get("corpus_dir")

    @property
    def outdated(self) -> bool:
        return self.manifest.get("format") != FORMAT

    @cached_property
    def keyword(self) -> KeywordIndex | None:
        if not self.size:
            return None
        return KeywordIndex([(p.postings, start) for p, start in self.parts], live=self._live)

    def rows(self) -> dict[str, tuple[int, int, int]]:
        return self._rows

    @cached_property
    def _rows(self) -> dict[str, tuple[int, int, int]]:
        return {p.paper_id: (n, int(self.starts[n]), int(self._ends[n])) for n, p in enumerate(self.papers)}

    def locate(self, row: int) -> tuple[int, int]:
        """(paper number, chunk number within it) of a row; IndexError for an unused row."""
        i = int(np.searchsorted(self._sorted_starts, row, "right")) - 1
        number = int(self._order[i]) if i >= 0 else -1
        if number < 0 or not self.starts[number] <= row < self._ends[number]:
            raise IndexError(f"row {row} holds no chunk of this generation")
        return number, row - int(self.starts[number])

    def paper_of(self, row: int) -> PaperInfo:
        return self.papers[self.locate(row)[0]]

    def paper_data(self, number: int) -> PaperData:
        return self._cache.get(number)

    def kinds(self, rows: Sequence[int]) -> np.ndarray:
        return self._kinds[np.asarray(rows, np.int64)]

    def chunk_vector(self, row: int) -> np.ndarray:
        number, local = self.locate(row)
        return np.asarray(self.paper_data(number).vectors[local], np.float32)

    def sentence_matrix(self, row: int) -> np.ndarray:
        number, local = self.locate(row)
        data = self.paper_data(number)
        start = int(self._sentence_starts[row])
        stop = start + len(data.chunks[local].sentences)
        if stop > len(data.sentences):
            raise IndexLoadError(self.papers[number].segment, "sentence vectors that do not fit its chunks; rebuild with `culture-rag build`")
        return data.sentences[start:stop].astype(np.float32)

    def dense_search(self, vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None):
        within = rows if rows is not None else self._live  # rows of removed papers are never candidates
        scores, found = search_parts([(p.dense, start) for p, start in self.parts], vector, k, within)
        keep = found >= 0
        return [int(r) for r in found[keep]], [float(s) for s in scores[keep]]

    def chunk_row(self, chunk_id: str) -> int | None:
        value = chunk_hash(chunk_id)
        for part, start in self.parts:
            for local in part.rows_of_hash(value):
                row = start + int(local)
                try:
                    if self.chunks[row].chunk_id == chunk_id:
                        return row
                except IndexError:  # a removed paper's row
                    continue
        return None


def _ranges(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """The used rows as merged [start, stop) ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(zip(starts.tolist(), ends.tolist())):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def unreadable(path: Path, exc: Exception) -> IndexLoadError:
    return IndexLoadError(path, f"unreadable ({type(exc).__name__}: {str(exc)[:200]}); rebuild with `culture-rag build`")
