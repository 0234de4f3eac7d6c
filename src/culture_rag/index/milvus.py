"""The store of an index kept in Milvus (Standalone or Distributed; the tests use the Milvus Lite
server): the same generations as a local index folder, for libraries that outgrow one machine.

Two collections per `collection` name:

    <name>_chunks_<dim>   one row per chunk of each segment, keyed "<segment>/<ordinal>": the chunk
                          record (index.writing's JSON), its vector (IP; vectors are normalized),
                          its sentences' float16 vectors (base64), and its stemmed keyword tokens
                          (lexical.content_words) with a BM25 function and text match on them
    <name>_records        generation heads, the manifests (zlib JSON in base64 pieces: 40k
                          papers are megabytes, past VARCHAR's 64 KiB), line anchors, overflow

Generations are atomic: a write inserts the rows of its new segments (tagged `born` with the new
generation's number), then its manifest's pieces, and commits by inserting the generation's
head row last. The live generation is the highest head. Readers filter `born <= generation`,
so rows of a write still running, or killed before its head, are invisible; the next write
deletes them, and after its commit the segments the new generation dropped. Only the live
generation is kept: Milvus keeps its own replicas, so there is no damaged-file fallback to keep
an older generation for.

Chunk rows are keyed by segment, not by paper: two papers with the same bytes share one
segment's rows, and a hit maps to the first paper (in scope) that holds the segment, whose id
the chunk is given, as the local reader does.

Keyword tokens are the local store's own stems, so BM25 sees the same terms. Milvus Lite has
only the `standard` and `jieba` tokenizers (no `whitespace`), so every stored token is written
in [a-z0-9]+ (a stem outside it in hex, _token): any tokenizer keeps such a token whole, and
one schema serves Lite and a real cluster."""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import json
import logging
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from culture_rag.errors import IndexLoadError, IndexModelMismatch, IndexWriteError
from culture_rag.index.lexical import KeywordHits, content_words
from culture_rag.types import Chunk, PaperInfo, PaperMeta
from culture_rag.index import layout
from culture_rag.index.layout import MANIFEST_DIGEST, KeptPaper, ModelInfo, Segment, manifest_digest
from culture_rag.index.reading import chunk_of
from culture_rag.index.store import kept_without
from culture_rag.index.writing import Stamp, _chunk_record, _record, stamp_record, write_lock

log = logging.getLogger(__name__)

STORE_FORMAT = 1
VARCHAR_MAX = 65_535  # bytes: Milvus's largest VARCHAR
PIECE = 60_000  # base64 characters per record piece
BATCH = 256  # rows per insert
ID_BATCH = 512  # ids or segments per filter expression
TOP_MAX = 16_384  # Milvus's largest limit of one search or query
K1, B = 1.5, 0.75  # the local keyword index's BM25 parameters (lexical.K1, lexical.B)
_SEGMENT = re.compile(r"[0-9a-f]{24}")
_PLAIN = re.compile(r"[a-z0-9]+")
_HEXLIKE = re.compile(r"x[0-9a-f]*")
CACHE_ROWS = 4096


def _token(word: str) -> str:
    """A stem as a token every Milvus tokenizer keeps whole and as it is: [a-z0-9]+ stems stay,
    others (and stems that look like an encoded one) become "x" + their UTF-8 in hex."""
    if _PLAIN.fullmatch(word) and not _HEXLIKE.fullmatch(word):
        return word
    return "x" + word.encode("utf-8").hex()


def keyword_text(text: str) -> str:
    """The keyword field of a chunk, or the BM25 query of a question: its stems as tokens."""
    return " ".join(_token(w) for w in content_words(text))


def _pieces(data: bytes) -> list[str]:
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i : i + PIECE] for i in range(0, len(encoded), PIECE)] or [""]


def _quoted(values) -> str:
    """A list literal of ids for a filter; ids are hex digests or our own keys (no quotes)."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


CONNECT_TIMEOUT_S = 60
# gRPC keepalive pings far apart and never on idle channels: a gRPC server's default policy
# (Milvus Lite's too) allows one ping in 5 minutes without data and answers more with GOAWAY
# "too_many_pings", after which the shared channel to it fails. pymilvus pings every 10 s,
# also during a call that waits longer than that. pymilvus shares one channel per address,
# whatever options later clients pass: every client of ours, the tests' too, passes these.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 600_000}


class MilvusStore:
    """An index in a Milvus collection (see the module docstring for its layout). `lock_dir`
    holds the writers' lock file: one writer per machine at a time; writers on several machines
    need a lock of their own (the write also refuses to commit over a generation it did not
    start from). `shards` spread a new chunks collection's writes over that many channels;
    `replicas` load each collection on that many query-node groups, for read throughput and
    failover."""

    def __init__(
        self,
        uri: str,
        collection: str,
        fingerprint: str,
        dimension: int,
        token: str | None = None,
        lock_dir: str | Path | None = None,
        client=None,
        shards: int = 1,
        replicas: int = 1,
    ) -> None:
        self.uri, self.collection, self.fingerprint, self.dimension = uri, collection, fingerprint, dimension
        self.token, self.shards, self.replicas = token, shards, replicas
        digest = hashlib.sha256(f"{uri}\n{collection}".encode()).hexdigest()[:16]
        self.lock_dir = Path(lock_dir) if lock_dir is not None else Path.home() / ".cache" / "culture-rag" / "milvus" / digest
        self._client = client
        self._client_lock = threading.Lock()
        self.records = f"{collection}_records"
        self._ready: set[str] = set()  # collections known to exist and be loaded

    @property
    def where(self) -> str:
        return f"milvus {self.uri} collection {self.collection}"

    @property
    def client(self):
        """Connected on first use: constructing a store has no side effects."""
        with self._client_lock:
            if self._client is None:
                from pymilvus import MilvusClient

                kwargs = {"token": self.token} if self.token else {}
                self._reachable()
                try:
                    # GRPC_OPTIONS: no pings a server refuses. A server that accepts connections
                    # gets a minute for its first answer.
                    client = MilvusClient(uri=self.uri, timeout=CONNECT_TIMEOUT_S, grpc_options=GRPC_OPTIONS, **kwargs)
                    self._client = _Guarded(client, self.where)
                except Exception as exc:  # noqa: BLE001  pymilvus raises its own kinds for a refused connection
                    raise IndexLoadError(self.where, f"cannot connect ({exc}); start Milvus or fix milvus_uri") from None
            return self._client

    def _reachable(self) -> None:
        """Fail at once where nothing listens, rather than after the connect timeout."""
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(self.uri if "://" in self.uri else f"http://{self.uri}")
        if parts.hostname is None or parts.scheme not in ("http", "https", "tcp", "grpc"):
            return  # a form pymilvus knows better (a Lite file, a cloud endpoint): let it say
        try:
            with socket.create_connection((parts.hostname, parts.port or 19530), timeout=5):
                pass
        except OSError as exc:
            raise IndexLoadError(self.where, f"cannot connect ({exc.strerror or exc}); start Milvus or fix milvus_uri") from None

    def _loaded(self, name: str) -> bool:
        """Whether collection `name` exists, loaded for queries (a cluster restarted, or a
        collection released by an operator, must be loaded again before it answers)."""
        if name in self._ready:
            return True
        if not self.client.has_collection(name):
            return False
        if "NotLoad" in str(self.client.get_load_state(name).get("state")):
            self.client.load_collection(name, replica_number=self.replicas)
        self._ready.add(name)
        return True

    def chunks_collection(self, dimension: int) -> str:
        # Named by dimension: a rebuild with a model of another size writes beside the live one.
        return f"{self.collection}_chunks_{dimension}"

    # --- reading ------------------------------------------------------------------------------

    def _heads(self) -> list[dict]:
        if not self._loaded(self.records):
            return []
        rows = self.client.query(
            self.records, filter="kind == 'head'", output_fields=["generation", "body"], limit=TOP_MAX
        )
        return sorted(rows, key=lambda r: -int(r["generation"]))

    def _live_head(self) -> dict | None:
        heads = self._heads()
        return heads[0] if heads else None

    def open(self) -> MilvusSnapshot:
        head = self._live_head()
        if head is None:
            raise IndexLoadError(self.where, "no index there; run `culture-rag build` with this store to write one")
        return self._load(head)

    def snapshot(self, held: MilvusSnapshot | None = None) -> MilvusSnapshot | None:
        head = self._live_head()
        if head is None:
            return None
        if held is not None and held.generation == int(head["generation"]) and held.digest == json.loads(head["body"]).get("digest"):
            return held
        return self._load(head)

    def is_live(self, snapshot: MilvusSnapshot) -> bool:
        try:
            head = self._live_head()
        except IndexLoadError:
            return False
        return head is not None and int(head["generation"]) == snapshot.generation and (
            json.loads(head["body"]).get("digest") == snapshot.digest
        )

    def _load(self, head: dict) -> MilvusSnapshot:
        generation = int(head["generation"])
        where = f"{self.where}, generation {generation}"
        try:
            body = json.loads(head["body"])
            manifest = json.loads(zlib.decompress(self._read_pieces(f"kind == 'manifest' and generation == {generation}", body["pieces"])))
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise IndexLoadError(where, f"damaged generation record ({exc}); run `culture-rag build` to write it again") from None
        if not isinstance(manifest, dict) or manifest.get(MANIFEST_DIGEST) != manifest_digest(manifest) or body.get("digest") != manifest.get(MANIFEST_DIGEST):
            raise IndexLoadError(where, "checksum mismatch: the manifest is damaged or was changed; run `culture-rag build`")
        model = manifest.get("model", {})
        if model.get("fingerprint") != self.fingerprint:
            raise IndexModelMismatch(
                where,
                f"built with model {model.get('fingerprint')!r} but the configured model is {self.fingerprint!r}; "
                "rebuild with `culture-rag build` or configure the original model",
            )
        if model.get("dimension") != self.dimension:
            raise IndexModelMismatch(where, f"dimension {model.get('dimension')} does not match the model's {self.dimension}; rebuild")
        if manifest.get("format") != layout.FORMAT or manifest.get("store_format") != STORE_FORMAT:
            raise IndexModelMismatch(
                where, f"written in index format {manifest.get('format')!r}, this version reads {layout.FORMAT}; "
                "run `culture-rag build` to index the papers again"
            )
        chunks = body.get("chunks")
        if chunks != self.chunks_collection(self.dimension) or not self._loaded(chunks):
            raise IndexLoadError(where, f"its chunks collection {chunks!r} is missing; run `culture-rag build`")
        dim = next(f["params"]["dim"] for f in self.client.describe_collection(chunks)["fields"] if f["name"] == "vector")
        if int(dim) != self.dimension:
            raise IndexModelMismatch(where, f"collection {chunks} holds vectors of dimension {dim}, the model's is {self.dimension}; rebuild")
        papers = tuple(_paper_of_record(where, n, r) for n, r in enumerate(manifest.get("papers", [])))
        return MilvusSnapshot(self, generation, manifest, papers, chunks)

    def _read_pieces(self, expr: str, count: int) -> bytes:
        rows = self.client.query(self.records, filter=expr, output_fields=["part", "body"], limit=TOP_MAX)
        parts = {int(r["part"]): r["body"] for r in rows}
        if sorted(parts) != list(range(count)):
            raise ValueError(f"{len(parts)} of {count} pieces")
        return base64.b64decode("".join(parts[i] for i in range(count)), validate=True)

    def lines(self, snapshot: MilvusSnapshot, paper: PaperInfo) -> np.ndarray:
        where = f"{self.where}, lines of {paper.paper_id}"
        count = snapshot.manifest.get("lines", {}).get(paper.segment)
        try:
            data = self._read_pieces(f"kind == 'lines' and segment == '{paper.segment}'", int(count))
        except (ValueError, TypeError) as exc:
            raise IndexLoadError(where, f"missing or damaged ({exc}); rebuild with `culture-rag build`") from None
        if len(data) % 12:
            raise IndexLoadError(where, f"{len(data)} bytes, not rows of 3 int32; rebuild with `culture-rag build`")
        return np.frombuffer(data, dtype="<i4").reshape(-1, 3).copy()

    # --- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with write_lock(self.lock_dir):
            yield

    def write(
        self,
        papers: Sequence[Segment | KeptPaper],
        *,
        model: ModelInfo,
        settings: Mapping[str, str],
        corpus_dir: str,
        previous: MilvusSnapshot | None = None,
    ) -> MilvusSnapshot:
        rows = previous.rows() if previous is not None else {}
        if any(isinstance(p, KeptPaper) and p.paper.paper_id not in rows for p in papers):
            raise ValueError("a kept paper must be a paper of the previous generation")
        if model.dimension != self.dimension:
            raise ValueError(f"vectors of dimension {model.dimension} for a store of dimension {self.dimension}")
        try:
            live = self._live_head()
            number = int(live["generation"]) if live else 0
            if previous is not None and previous.generation != number:
                raise IndexWriteError(
                    f"{self.where}: generation {number} was written by another writer since generation "
                    f"{previous.generation} was read; the index is unchanged, retry"
                )
            self._collect(number, previous)  # before creating: it drops chunk collections no head names
            self._ensure_collections()
            generation = number + 1
            self._insert_segments([p for p in papers if isinstance(p, Segment)], generation)
            manifest = self._manifest(papers, Stamp(model, settings, corpus_dir), generation, previous)
            pieces = _pieces(zlib.compress(json.dumps(manifest, ensure_ascii=False).encode("utf-8"), 6))
            self._insert_pieces("manifest", pieces, generation=generation)
            head = {"pieces": len(pieces), "digest": manifest[MANIFEST_DIGEST], "chunks": self.chunks_collection(self.dimension)}
            # The commit: a write killed before this row leaves the previous generation live.
            self.client.insert(self.records, [self._record_row(f"head/{generation}", "head", generation, json.dumps(head))])
        except IndexWriteError:
            raise
        except Exception as exc:  # noqa: BLE001  pymilvus's errors, a lost connection: nothing was committed
            raise IndexWriteError(
                f"{self.where}: writing the new index failed ({type(exc).__name__}: {str(exc)[:300]}); "
                "the previous index is still served; check the Milvus server, then retry"
            ) from exc
        try:
            self._collect(generation, previous)
        except Exception as exc:  # noqa: BLE001  the new generation is live; the next write collects the rest
            log.warning("%s: could not remove what generation %d dropped (%s)", self.where, generation, exc)
        chunks = self.chunks_collection(self.dimension)
        return MilvusSnapshot(self, generation, manifest, tuple(p.paper for p in papers), chunks)

    def remove(self, paper_id: str, previous: MilvusSnapshot) -> MilvusSnapshot:
        kept = kept_without(paper_id, previous)
        stamp = Stamp.of(previous)
        return self.write(kept, model=stamp.model, settings=stamp.settings, corpus_dir=stamp.corpus_dir, previous=previous)

    def _manifest(self, papers, stamp: Stamp, generation: int, previous) -> dict:
        old_lines = previous.manifest.get("lines", {}) if previous is not None else {}
        lines = {}
        for item in papers:
            segment = item.paper.segment
            lines[segment] = len(_pieces(_lines_bytes(item.lines))) if isinstance(item, Segment) else old_lines[segment]
        manifest = {
            **stamp_record(stamp, papers, previous, generation),
            "store_format": STORE_FORMAT,
            "papers": [_record(p.paper) for p in papers],
            "lines": lines,  # pieces of each segment's line anchors
        }
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        return manifest

    def _ensure_collections(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        client = self.client
        if not client.has_collection(self.records):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("kind", DataType.VARCHAR, max_length=16)
            schema.add_field("generation", DataType.INT64)  # a generation's own rows; the generation that wrote the others
            schema.add_field("segment", DataType.VARCHAR, max_length=64)
            schema.add_field("part", DataType.INT64)
            schema.add_field("body", DataType.VARCHAR, max_length=VARCHAR_MAX)
            schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
            index = client.prepare_index_params()
            index.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
            client.create_collection(self.records, schema=schema, index_params=index, consistency_level="Strong")
            self._replicate(self.records)
        chunks = self.chunks_collection(self.dimension)
        if not client.has_collection(chunks):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=128)
            schema.add_field("segment", DataType.VARCHAR, max_length=64)
            schema.add_field("ordinal", DataType.INT64)
            schema.add_field("born", DataType.INT64)
            schema.add_field("chunk_id", DataType.VARCHAR, max_length=64)
            # Read only for the hits a query returns: memory-mapped on a cluster's query nodes, not
            # held in memory (at 100M chunks they are most of the collection; Lite ignores it).
            schema.add_field("record", DataType.VARCHAR, max_length=VARCHAR_MAX, mmap_enabled=True)  # "": in records
            schema.add_field("sentences", DataType.VARCHAR, max_length=VARCHAR_MAX, mmap_enabled=True)  # float16 base64
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
            schema.add_field(
                "words", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True, enable_match=True,
                analyzer_params={"tokenizer": "standard"}, mmap_enabled=True,  # searched by its indexes only
            )
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["words"], output_field_names=["sparse"]))
            index = client.prepare_index_params()
            index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params={"M": 32, "efConstruction": 200})
            index.add_index(
                field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": K1, "bm25_b": B}
            )
            client.create_collection(
                chunks, schema=schema, index_params=index, consistency_level="Strong", num_shards=self.shards
            )
            self._replicate(chunks)

    def _replicate(self, name: str) -> None:
        """A new collection loads with one replica; reloaded with `replicas` when more are wanted."""
        if self.replicas > 1:
            self.client.release_collection(name)
            self.client.load_collection(name, replica_number=self.replicas)

    def _record_row(self, pk: str, kind: str, generation: int, body: str, segment: str = "", part: int = 0) -> dict:
        return {"pk": pk, "kind": kind, "generation": generation, "segment": segment, "part": part, "body": body, "unused": [0.0, 0.0]}

    def _insert_pieces(self, kind: str, pieces: list[str], generation: int, segment: str = "", key: str = "") -> None:
        name = key or (f"{segment}" if segment else f"{generation}")
        rows = [self._record_row(f"{kind}/{name}/{i}", kind, generation, piece, segment, i) for i, piece in enumerate(pieces)]
        for batch in _batches(rows, 16):  # 16 pieces are a megabyte
            self.client.insert(self.records, list(batch))

    def _insert_segments(self, segments: list[Segment], generation: int) -> None:
        """Rows of the segments not in the collection yet (segments are named by content, so a
        present one holds the same rows)."""
        chunks = self.chunks_collection(self.dimension)
        unique = list({s.paper.segment: s for s in segments}.values())
        present: set[str] = set()
        for batch in _batches([s.paper.segment for s in unique], ID_BATCH):
            found = self.client.query(chunks, filter=f"segment in {_quoted(batch)} and ordinal == 0", output_fields=["segment"], limit=len(batch))
            present |= {r["segment"] for r in found}
        for segment in unique:
            if segment.paper.segment in present:
                continue
            rows = self._segment_rows(segment, generation)
            for batch in _batches(rows, BATCH):
                self.client.insert(chunks, list(batch))
            self._insert_pieces("lines", _pieces(_lines_bytes(segment.lines)), generation, segment=segment.paper.segment)

    def _segment_rows(self, segment: Segment, generation: int) -> list[dict]:
        rows, position = [], 0
        sid = segment.paper.segment
        vectors = np.ascontiguousarray(segment.vectors, dtype=np.float32)
        for ordinal, chunk in enumerate(segment.chunks):
            n = len(chunk.sentences)
            sentences = np.ascontiguousarray(segment.sentence_vectors[position : position + n], dtype="<f2")
            position += n
            record = json.dumps(_chunk_record(chunk), ensure_ascii=False)
            blob = base64.b64encode(sentences.tobytes()).decode("ascii")
            fields = {"record": record, "sentences": blob}
            for name, value in fields.items():
                if len(value.encode("utf-8")) > VARCHAR_MAX:  # rare: a chunk of very many sentences
                    self._insert_pieces(name, _pieces(value.encode("utf-8")), generation, segment=sid, key=f"{sid}/{ordinal}")
                    fields[name] = ""
            rows.append({
                "pk": f"{sid}/{ordinal}", "segment": sid, "ordinal": ordinal, "born": generation, "chunk_id": chunk.chunk_id,
                **fields, "vector": vectors[ordinal].tolist(), "words": keyword_text(chunk.embed_text),
            })
        return rows

    def _collect(self, live: int, previous: MilvusSnapshot | None) -> None:
        """Delete what no generation up to `live` needs: rows of writes that never committed
        (born after it), then the segments of older generations that `live` dropped, then those
        generations' records (last: a collection killed half-way is redone from them)."""
        client = self.client
        if not client.has_collection(self.records):
            return
        client.delete(self.records, filter=f"generation > {live}")
        for name in client.list_collections():
            if name.startswith(f"{self.collection}_chunks_") and client.has_collection(name):
                client.delete(name, filter=f"born > {live}")
        heads = {int(h["generation"]): h for h in self._heads()}
        older = sorted(g for g in heads if g < live)
        if not older:
            return
        keep = self._segments_of(heads[live], None) if live in heads else None
        if keep is None:
            return  # the live generation unreadable: deleting by it could drop what it needs
        for generation in older:
            dropped = self._segments_of(heads[generation], previous if previous and previous.generation == generation else None)
            dead = sorted((dropped or set()) - keep)
            for batch in _batches(dead, ID_BATCH):
                client.delete(self.records, filter=f"segment in {_quoted(batch)}")
                for name in client.list_collections():
                    if name.startswith(f"{self.collection}_chunks_"):
                        client.delete(name, filter=f"segment in {_quoted(batch)}")
            client.delete(self.records, filter=f"generation == {generation} and kind == 'manifest'")
            client.delete(self.records, filter=f"generation == {generation} and kind == 'head'")
        live_chunks = json.loads(heads[live]["body"]).get("chunks")
        for name in client.list_collections():  # collections of another dimension that no head names
            if name.startswith(f"{self.collection}_chunks_") and name != live_chunks:
                client.drop_collection(name)
                self._ready.discard(name)

    def _segments_of(self, head: dict, snapshot: MilvusSnapshot | None) -> set[str] | None:
        """The segments a generation names; None when its records cannot be read (then it has
        been collected already: its records go last)."""
        if snapshot is not None:
            return {p.segment for p in snapshot.papers}
        generation = int(head["generation"])
        try:
            pieces = json.loads(head["body"])["pieces"]
            manifest = json.loads(zlib.decompress(self._read_pieces(f"kind == 'manifest' and generation == {generation}", pieces)))
            return {p["segment"] for p in manifest["papers"]}
        except (ValueError, KeyError, TypeError, zlib.error):
            return None


class _Guarded:
    """A MilvusClient whose errors are the index's: a server that fails a call is named, with
    what to do, rather than surfacing as a pymilvus exception."""

    def __init__(self, client, where: str) -> None:
        self._client, self._where = client, where

    def __getattr__(self, name: str):
        from pymilvus.exceptions import MilvusException

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except MilvusException as exc:
                raise IndexLoadError(self._where, f"the server failed {name} ({exc.message}); check the Milvus server") from None

        return call


def _lines_bytes(lines: np.ndarray) -> bytes:
    return np.ascontiguousarray(lines, dtype="<i4").reshape(-1, 3).tobytes()


def _paper_of_record(where: str, number: int, record: dict) -> PaperInfo:
    try:
        found = PaperMeta.from_dict(record["found"]) if record.get("found") is not None else None
        info = PaperInfo(**{**record, "authors": tuple(record["authors"]), "found": found, "ocr_pages": tuple(record.get("ocr_pages", ()))})
    except (TypeError, KeyError, AttributeError) as exc:
        raise IndexLoadError(where, f"damaged manifest: paper record {number} is malformed ({exc})") from None
    if not (isinstance(info.segment, str) and _SEGMENT.fullmatch(info.segment)):
        raise IndexLoadError(where, f"damaged manifest: paper {number} names segment {info.segment!r}")
    return info


class _Row:
    __slots__ = ("chunk", "vector", "sentences")

    def __init__(self, chunk: Chunk, vector: np.ndarray, sentences: str | None) -> None:
        self.chunk, self.vector, self.sentences = chunk, vector, sentences


class MilvusSnapshot:
    """One generation of a Milvus store, read on demand: the manifest and paper records are in
    memory, chunk rows are fetched when asked for and cached (bounded)."""

    def __init__(self, store: MilvusStore, generation: int, manifest: dict, papers: tuple[PaperInfo, ...], chunks: str) -> None:
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
        rows = [self._row_of(r["segment"], int(r["ordinal"]), None) for r in found]
        rows = [r for r in rows if r is not None]
        return min(rows) if rows else None

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
        for batch in _batches(missing, ID_BATCH):
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
        key = self._key(row)
        rows = self.store.client.query(self.store.records, filter=f"kind == '{field}' and pk like '{field}/{key}/%'", output_fields=["part", "body"], limit=TOP_MAX)
        parts = {int(r["part"]): r["body"] for r in rows}
        return base64.b64decode("".join(parts[i] for i in range(len(parts))))

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

    # --- searching --------------------------------------------------------------------------

    def _row_of(self, segment: str, ordinal: int, allowed: list[tuple[int, int]] | None) -> int | None:
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
        terms = ([f"segment in {_quoted(dict.fromkeys(whole))}"] if whole else []) + parts
        return f"{live} and ({' or '.join(terms) or 'false'})"

    def _searched(self, search, k: int, rows: Sequence[tuple[int, int]] | None) -> list[tuple[int, float, dict]]:
        """(row, score, entity) of the k best hits of `search(limit)`, best first. Hits on rows
        this generation dropped (a write's collection still running) are skipped, asking for
        more when they left fewer than k."""
        allowed = [(int(a), int(b)) for a, b in rows] if rows is not None else None
        limit = min(k, TOP_MAX)
        while True:
            hits = search(limit)
            out, seen = [], set()
            for hit in hits:
                segment, ordinal = hit["pk"].rsplit("/", 1)
                row = self._row_of(segment, int(ordinal), allowed)
                if row is not None and row not in seen:
                    seen.add(row)
                    out.append((row, float(hit["distance"]), hit.get("entity", {})))
            if len(out) >= k or len(hits) < limit or limit >= TOP_MAX:
                return out[:k]
            limit = min(limit * 2, TOP_MAX)

    def _keep(self, found: list[tuple[int, float, dict]]) -> None:
        """Cache the rows a search returned with their record and vector."""
        for row, _, entity in found:
            if "record" in entity and row not in self._cache:
                self._made(row, {"pk": self._key(row), **entity})

    def dense_search(self, vector: np.ndarray, k: int, rows: Sequence[tuple[int, int]] | None = None) -> tuple[list[int], list[float]]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        expr = self.scope_filter(rows)

        def search(limit: int):
            return self.store.client.search(
                self.collection, data=[query], anns_field="vector", limit=limit, filter=expr,
                search_params={"metric_type": "IP", "params": {"ef": max(limit, 256)}}, output_fields=["record", "vector"],
            )[0]

        found = self._searched(search, k, rows)
        self._keep(found)
        return [r for r, _, _ in found], [s for _, s, _ in found]

    def hybrid_search(
        self, query: str, vector: np.ndarray, k: int, rrf_k: int, rows: Sequence[tuple[int, int]] | None = None
    ) -> list[tuple[int, float]]:
        """The dense and BM25 lists (k each) fused by Milvus's RRF, up to 2k rows best first."""
        from pymilvus import AnnSearchRequest, RRFRanker

        words = keyword_text(query)
        dense = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        expr = self.scope_filter(rows)
        if not words:  # no keyword list: RRF of the dense list alone
            found, _ = self.dense_search(vector, k, rows)
            return [(row, 1.0 / (rrf_k + rank)) for rank, row in enumerate(found, start=1)]

        def search(limit: int):
            requests = [
                AnnSearchRequest(data=[dense], anns_field="vector", param={"metric_type": "IP", "params": {"ef": max(limit, 256)}}, limit=limit, expr=expr),
                AnnSearchRequest(data=[words], anns_field="sparse", param={"metric_type": "BM25"}, limit=limit, expr=expr),
            ]
            return self.store.client.hybrid_search(
                self.collection, requests, ranker=RRFRanker(rrf_k), limit=2 * limit, output_fields=["record", "vector"]
            )[0]

        found = self._searched(lambda limit: search(max(limit // 2, 1)), 2 * k, rows)
        self._keep(found)
        return [(row, score) for row, score, _ in found]


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


class MilvusKeyword:
    """BM25 by the collection's function over our own stems; document frequencies by text-match
    counts, cached for the snapshot."""

    def __init__(self, snapshot: MilvusSnapshot) -> None:
        self._snapshot = snapshot
        self._df: dict[str, int] = {}
        self._used: dict[tuple, bool] = {}

    def search(self, query: str, k: int, within: Sequence[tuple[int, int]] | None = None) -> KeywordHits:
        snap = self._snapshot
        words = keyword_text(query)
        if not words:
            return KeywordHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        expr = snap.scope_filter(within)

        def search(limit: int):
            return snap.store.client.search(
                snap.collection, data=[words], anns_field="sparse", limit=limit, filter=expr,
                search_params={"metric_type": "BM25"}, output_fields=["record", "vector"],
            )[0]

        found = snap._searched(search, k, within)
        snap._keep(found)
        # Milvus Lite reports BM25 as a negated distance; a cluster as the score itself.
        return KeywordHits(np.array([r for r, _, _ in found], np.int64), np.array([abs(s) for _, s, _ in found], np.float32))

    def _count(self, expr: str) -> int:
        snap = self._snapshot
        found = snap.store.client.query(snap.collection, filter=expr, output_fields=["count(*)"])
        return int(found[0]["count(*)"]) if found else 0

    def idf(self, words: list[str]) -> dict[str, float]:
        snap = self._snapshot
        n = snap.size
        for word in dict.fromkeys(words):
            if word not in self._df:
                self._df[word] = self._count(f"TEXT_MATCH(words, '{_token(word)}') and born <= {snap.generation}")
        return {w: float(np.log(1 + (n - self._df[w] + 0.5) / (self._df[w] + 0.5))) for w in words}

    def used_within(self, words: list[str], within: Sequence[tuple[int, int]]) -> set[str]:
        snap = self._snapshot
        scope = tuple((int(a), int(b)) for a, b in within)
        expr = snap.scope_filter(scope)
        out = set()
        for word in dict.fromkeys(words):
            key = (word, scope)
            if key not in self._used:
                found = snap.store.client.query(
                    snap.collection, filter=f"TEXT_MATCH(words, '{_token(word)}') and {expr}", output_fields=["pk"], limit=16
                )
                # The rows must be this generation's, in the scope (a shared segment's other paper is not)
                self._used[key] = any(snap._row_of(*_split(r["pk"]), list(scope)) is not None for r in found)
            if self._used[key]:
                out.add(word)
        return out


def _split(pk: str) -> tuple[str, int]:
    segment, ordinal = pk.rsplit("/", 1)
    return segment, int(ordinal)
