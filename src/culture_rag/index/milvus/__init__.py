"""The store of an index kept in Milvus (Standalone or Distributed; the tests use the Milvus Lite
server): the same generations as a local index folder, for libraries that outgrow one machine.
MilvusStore is the entry point; the work is done by the modules beside this one:

    milvus/client.py    the connection to the server, request limits, filter literals
    milvus/schema.py    the two collections' fields and indexes, the keyword tokens
    milvus/records.py   generation heads and the pieces of manifests and line anchors
    milvus/writing.py   writing a generation and committing it; collecting what none needs
    milvus/reading.py   opening a generation, verified
    milvus/snapshot.py  a generation as questions read it, rows fetched on demand
    milvus/search.py    dense, BM25 and hybrid search of a generation; keyword statistics

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
an older generation for."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from culture_rag.errors import IndexLoadError
from culture_rag.index.layout import KeptPaper, ModelInfo, Segment
from culture_rag.index.milvus.client import GRPC_OPTIONS, MilvusConnection
from culture_rag.index.milvus.reading import is_head_of, line_anchors, load_generation
from culture_rag.index.milvus.records import live_head
from culture_rag.index.milvus.schema import STORE_FORMAT, keyword_text
from culture_rag.index.milvus.schema import keyword_token as _token  # the name the tests know it by
from culture_rag.index.milvus.search import MilvusKeyword
from culture_rag.index.milvus.snapshot import MilvusSnapshot
from culture_rag.index.milvus.writing import insert_generation
from culture_rag.index.store import kept_without
from culture_rag.index.writing import Stamp, write_lock
from culture_rag.types import PaperInfo

__all__ = ["GRPC_OPTIONS", "STORE_FORMAT", "MilvusKeyword", "MilvusSnapshot", "MilvusStore", "_token", "keyword_text"]


class MilvusStore(MilvusConnection):
    """An index in a Milvus collection (see the module docstring for its layout), a store.Store.
    `lock_dir` holds the writers' lock file: one writer per machine at a time; writers on several
    machines need a lock of their own (the write also refuses to commit over a generation it did
    not start from). `shards` spread a new chunks collection's writes over that many channels;
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
        super().__init__(uri, collection, dimension, token, client, shards, replicas)
        self.fingerprint = fingerprint
        digest = hashlib.sha256(f"{uri}\n{collection}".encode()).hexdigest()[:16]
        self.lock_dir = Path(lock_dir) if lock_dir is not None else Path.home() / ".cache" / "culture-rag" / "milvus" / digest

    # --- reading ------------------------------------------------------------------------------

    def open(self) -> MilvusSnapshot:
        head = live_head(self)
        if head is None:
            raise IndexLoadError(self.where, "no index there; run `culture-rag build` with this store to write one")
        return load_generation(self, head, self.fingerprint)

    def snapshot(self, held: MilvusSnapshot | None = None) -> MilvusSnapshot | None:
        head = live_head(self)
        if head is None:
            return None
        if held is not None and is_head_of(head, held):
            return held
        return load_generation(self, head, self.fingerprint)

    def is_live(self, snapshot: MilvusSnapshot) -> bool:
        try:
            head = live_head(self)
        except IndexLoadError:
            return False
        return is_head_of(head, snapshot)

    def lines(self, snapshot: MilvusSnapshot, paper: PaperInfo) -> np.ndarray:
        return line_anchors(self, snapshot.manifest, paper)

    # --- writing ------------------------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return write_lock(self.lock_dir)

    def write(
        self,
        papers: Sequence[Segment | KeptPaper],
        *,
        model: ModelInfo,
        settings: Mapping[str, str],
        corpus_dir: str,
        previous: MilvusSnapshot | None = None,
    ) -> MilvusSnapshot:
        generation, manifest = insert_generation(self, papers, Stamp(model, settings, corpus_dir), previous)
        return MilvusSnapshot(self, generation, manifest, tuple(p.paper for p in papers), self.chunks_collection(self.dimension))

    def remove(self, paper_id: str, previous: MilvusSnapshot) -> MilvusSnapshot:
        kept = kept_without(paper_id, previous)
        stamp = Stamp.of(previous)
        return self.write(kept, model=stamp.model, settings=stamp.settings, corpus_dir=stamp.corpus_dir, previous=previous)
