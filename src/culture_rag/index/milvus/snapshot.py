"""One generation of a Milvus store as questions read it (the layout.Snapshot Protocol): the
manifest and paper records in memory, chunk rows fetched when asked for and cached (bounded).

Chunk rows are keyed by segment, not by paper: two papers with the same bytes share one
segment's rows, and a row maps to the first paper (in scope) that holds the segment, whose id
the chunk is given, as the local reader does."""

from __future__ import annotations

import base64
import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from culture_rag.errors import IndexLoadError
from culture_rag.index.layout import MANIFEST_DIGEST
from culture_rag.index.milvus.client import ID_BATCH, MilvusConnection, batches, quoted
from culture_rag.index.milvus.records import read_pieces
from culture_rag.index.milvus.search import Found, MilvusKeyword, search_dense, search_hybrid
from culture_rag.index.reading import chunk_of
from culture_rag.types import Chunk, PaperInfo

CACHE_ROWS = 4096


class _Row:
    __slots__ = ("chunk", "vector", "sentences")

    def __init__(self, chunk: Chunk, vector: np.ndarray, sentences: str | None) -> None:
        self.chunk, self.vector, self.sentences = chunk, vector, sentences


class MilvusSnapshot:
    """One generation of a Milvus store, read on demand: the manifest and paper records are in
    memory, chunk rows are fetched when asked for and cached (bounded)."""

    def __init__(self, store: MilvusConnection, generation: int, manifest: dict, papers: tuple[PaperInfo, ...], chunks: str) -> None:
        self.store, self.generation, self.manifest, self.papers = store, generation, manifest, papers
        self.collection = chunks
        self.digest = manifest.get(MANIFEST_DIGEST)
        self._starts = np.cumsum([0] + [p.n_chunks for p in papers]).astype(np.int64)
        self._by_segment: dict[str, list[int]] = {}
        for number, paper in enumerate(papers):
            self._by_segment.setdefault(paper.segment, []).append(number)
        self._cache: OrderedDict[int, _Row] = OrderedDict()
        self._lock = threading.Lock()
        self._keyword = MilvusKeyword(self) if self.size else None

    def __repr__(self) -> str:
        return f"MilvusSnapshot({self.store.where}, generation {self.generation}, {len(self.papers)} papers)"

    @property
    def size(self) -> int:
        return int(self._starts[-1])

    @property
    def chunks(self) -> Sequence[Chunk]:
        return _Chunks(self)

    @property
    def keyword(self) -> MilvusKeyword | None:
        return self._keyword

    @property
    def corpus_dir(self) -> str | None:
        return self.manifest.get("corpus_dir")

    def rows(self) -> dict[str, tuple[int, int, int]]:
        return {p.paper_id: (n, int(self._starts[n]), int(self._starts[n + 1])) for n, p in enumerate(self.papers)}

    def _number(self, row: int) -> int:
        if not 0 <= row < self.size:
            raise IndexError(row)
        return bisect.bisect_right(self._starts, row) - 1

    @property
    def outdated(self) -> bool:
        return False  # the collection's schema is the only format

    def kinds(self, rows: Sequence[int]) -> np.ndarray:
        from culture_rag.ingest.chunking import passage_kind

        fetched = self._rows(list(rows))  # one query for the rows not cached
        return np.fromiter((passage_kind(fetched[r].chunk) for r in rows), np.uint8, count=len(rows))

    def paper_of(self, row: int) -> PaperInfo:
        return self.papers[self._number(row)]

    def chunk_vector(self, row: int) -> np.ndarray:
        return self._rows([row])[row].vector

    def sentence_matrix(self, row: int) -> np.ndarray:
        got = self._rows([row], sentences=True)[row]
        blob = got.sentences
        if blob is None:
            blob = self._sentences_of(row)
        if blob == "":
            blob = self._overflow(row, "sentences").decode("ascii")
        matrix = np.frombuffer(base64.b64decode(blob), dtype="<f2").reshape(-1, self.store.dimension)
        if len(matrix) != len(got.chunk.sentences):
            raise IndexLoadError(self.store.where, f"chunk {got.chunk.chunk_id}: {len(matrix)} sentence vectors for {len(got.chunk.sentences)} sentences; rebuild")
        return matrix.astype(np.float32)

    def chunk_row(self, chunk_id: str) -> int | None:
        if not re.fullmatch(r"[0-9a-f]{1,64}", chunk_id or ""):
            return None
        found = self.store.client.query(
            self.collection, filter=f"chunk_id == '{chunk_id}' and born <= {self.generation}", output_fields=["segment", "ordinal"], limit=16
        )
        rows = [self.row_of(r["segment"], int(r["ordinal"]), None) for r in found]
        rows = [r for r in rows if r is not None]
        return min(rows) if rows else None

    # --- searching (milvus.search) ----------------------------------------------------------

    def dense_search(self, vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None) -> tuple[list[int], list[float]]:
        return search_dense(self, vector, k, rows)

    def hybrid_search(
        self, query: str, vector: np.ndarray, k: int, rrf_k: int, rows: Sequence[tuple[int, int]] | None = None
    ) -> list[tuple[int, float]]:
        """The dense and BM25 lists (k each) fused by Milvus's RRF, up to 2k rows best first."""
        return search_hybrid(self, query, vector, k, rrf_k, rows)

    def row_of(self, segment: str, ordinal: int, allowed: list[tuple[int, int]] | None) -> int | None:
        """The row of a segment's chunk: in the first paper holding the segment (within
        `allowed` rows); None for a segment this generation does not hold."""
        for number in self._by_segment.get(segment, ()):
            row = int(self._starts[number]) + ordinal
            if row < self._starts[number + 1] and (allowed is None or any(a <= row < b for a, b in allowed)):
                return row
        return None

    def scope_filter(self, rows: Sequence[tuple[int, int]] | None) -> str:
        """A filter for this generation's rows, within `rows` ([start, stop) ranges) if given."""
        live = f"born <= {self.generation}"
        if rows is None:
            return live
        whole, parts = [], []
        for a, b in rows:
            a, b = max(int(a), 0), min(int(b), self.size)
            while a < b:
                number = self._number(a)
                first, end = int(self._starts[number]), int(self._starts[number + 1])
                upto = min(b, end)
                segment = self.papers[number].segment
                if a == first and upto == end:
                    whole.append(segment)
                else:
                    parts.append(f"(segment == '{segment}' and ordinal >= {a - first} and ordinal < {upto - first})")
                a = upto
        terms = ([f"segment in {quoted(dict.fromkeys(whole))}"] if whole else []) + parts
        return f"{live} and ({' or '.join(terms) or 'false'})"

    def remember(self, found: Found) -> None:
        """Cache the rows a search returned with their record and vector."""
        for row, _, entity in found:
            if "record" in entity and row not in self._cache:
                self._made(row, {"pk": self._key(row), **entity})

    # --- fetching rows ----------------------------------------------------------------------

    def _key(self, row: int) -> str:
        number = self._number(row)
        return f"{self.papers[number].segment}/{row - int(self._starts[number])}"

    def _rows(self, rows: Sequence[int], sentences: bool = False) -> dict[int, _Row]:
        """Rows from the cache, the missing ones fetched in one request."""
        with self._lock:
            out = {r: self._cache[r] for r in rows if r in self._cache}
            for r in out:
                self._cache.move_to_end(r)
        missing = [r for r in dict.fromkeys(rows) if r not in out]
        fields = ["pk", "record", "vector"] + (["sentences"] if sentences else [])
        for batch in batches(missing, ID_BATCH):
            keys = {self._key(r): r for r in batch}
            found = {g["pk"]: g for g in self.store.client.get(self.collection, ids=list(keys), output_fields=fields)}
            for key, row in keys.items():
                if key not in found:
                    raise IndexLoadError(
                        self.store.where, f"generation {self.generation} lacks chunk {key}: a newer generation replaced it; reload"
                    )
                out[row] = self._made(row, found[key])
        return out

    def _made(self, row: int, entity: dict) -> _Row:
        paper = self.paper_of(row)
        record = entity["record"] or self._overflow(row, "record").decode("utf-8")
        try:
            chunk = chunk_of(record.encode("utf-8"), self.store.where, 1)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IndexLoadError(self.store.where, f"malformed chunk {entity.get('pk')} ({exc}); rebuild with `culture-rag build`") from None
        if chunk.paper_id != paper.paper_id:  # a segment shared by papers with the same bytes
            chunk = replace(chunk, paper_id=paper.paper_id)
        made = _Row(chunk, np.asarray(entity["vector"], dtype=np.float32), entity.get("sentences"))
        with self._lock:
            self._cache[row] = made
            while len(self._cache) > CACHE_ROWS:
                self._cache.popitem(last=False)
        return made

    def _sentences_of(self, row: int) -> str:
        found = self.store.client.get(self.collection, ids=[self._key(row)], output_fields=["sentences"])
        if not found:
            raise IndexLoadError(self.store.where, f"generation {self.generation} lacks chunk {self._key(row)}; reload")
        return found[0]["sentences"]

    def _overflow(self, row: int, field: str) -> bytes:
        """A chunk's field too large for its row, from its pieces in the records collection."""
        return read_pieces(self.store, f"kind == '{field}' and pk like '{field}/{self._key(row)}/%'")

    def slice(self, start: int, stop: int) -> list[Chunk]:
        """Chunks of rows start..stop, fetched paper by paper."""
        start, stop = max(start, 0), min(stop, self.size)
        out: list[Chunk] = []
        row = start
        while row < stop:
            number = self._number(row)
            end = min(stop, int(self._starts[number + 1]))
            first = int(self._starts[number])
            cached = self._cached(range(row, end))
            if cached is None:
                segment = self.papers[number].segment
                found = self.store.client.query(
                    self.collection,
                    filter=f"segment == '{segment}' and ordinal >= {row - first} and ordinal < {end - first}",
                    output_fields=["pk", "ordinal", "record", "vector"],
                    limit=end - row,
                )
                by_ordinal = {int(e["ordinal"]): e for e in found}
                if len(by_ordinal) != end - row:
                    raise IndexLoadError(self.store.where, f"generation {self.generation} lacks chunks of segment {segment}; reload")
                cached = [self._made(r, by_ordinal[r - first]).chunk for r in range(row, end)]
            out.extend(cached)
            row = end
        return out

    def _cached(self, rows: range) -> list[Chunk] | None:
        with self._lock:
            if all(r in self._cache for r in rows):
                return [self._cache[r].chunk for r in rows]
        return None


class _Chunks(Sequence):
    """A snapshot's chunks, read on demand."""

    def __init__(self, snapshot: MilvusSnapshot) -> None:
        self._snapshot = snapshot

    def __len__(self) -> int:
        return self._snapshot.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._snapshot.slice(start, stop)
        if index < 0:
            index += len(self)
        return self._snapshot._rows([index])[index].chunk

    def __iter__(self) -> Iterator[Chunk]:
        snap = self._snapshot
        for number in range(len(snap.papers)):
            yield from snap.slice(int(snap._starts[number]), int(snap._starts[number + 1]))
