"""Writing a generation into a Milvus store and committing it (the protocol the milvus module's
docstring describes: the new segments' rows tagged `born`, the manifest's pieces, the head row
last), and collecting what no generation up to the live one needs any more."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Sequence

import numpy as np

from culture_rag.errors import IndexWriteError
from culture_rag.index.layout import MANIFEST_DIGEST, KeptPaper, Segment, Snapshot, manifest_digest
from culture_rag.index.milvus.client import BATCH, ID_BATCH, MilvusConnection, batches, quoted
from culture_rag.index.milvus.records import heads, insert_pieces, live_head, pieces, read_manifest, record_row
from culture_rag.index.milvus.schema import STORE_FORMAT, VARCHAR_MAX, ensure_collections, keyword_text
from culture_rag.index.writing import Stamp, _chunk_record, _record, stamp_record

log = logging.getLogger(__name__)


def insert_generation(
    conn: MilvusConnection, papers: Sequence[Segment | KeptPaper], stamp: Stamp, previous: Snapshot | None
) -> tuple[int, dict]:
    """A new generation of `papers` (kept ones are `previous`'s), committed: its number and manifest."""
    rows = previous.rows() if previous is not None else {}
    if any(isinstance(p, KeptPaper) and p.paper.paper_id not in rows for p in papers):
        raise ValueError("a kept paper must be a paper of the previous generation")
    if stamp.model.dimension != conn.dimension:
        raise ValueError(f"vectors of dimension {stamp.model.dimension} for a store of dimension {conn.dimension}")
    try:
        live = live_head(conn)
        number = int(live["generation"]) if live else 0
        if previous is not None and previous.generation != number:
            raise IndexWriteError(
                f"{conn.where}: generation {number} was written by another writer since generation "
                f"{previous.generation} was read; the index is unchanged, retry"
            )
        collect(conn, number, previous)  # before creating: it drops chunk collections no head names
        ensure_collections(conn)
        generation = number + 1
        _insert_segments(conn, [p for p in papers if isinstance(p, Segment)], generation)
        manifest = _manifest(papers, stamp, generation, previous)
        parts = pieces(zlib.compress(json.dumps(manifest, ensure_ascii=False).encode("utf-8"), 6))
        insert_pieces(conn, "manifest", parts, generation=generation)
        head = {"pieces": len(parts), "digest": manifest[MANIFEST_DIGEST], "chunks": conn.chunks_collection(conn.dimension)}
        # The commit: a write killed before this row leaves the previous generation live.
        conn.client.insert(conn.records, [record_row(f"head/{generation}", "head", generation, json.dumps(head))])
    except IndexWriteError:
        raise
    except Exception as exc:  # noqa: BLE001  pymilvus's errors, a lost connection: nothing was committed
        raise IndexWriteError(
            f"{conn.where}: writing the new index failed ({type(exc).__name__}: {str(exc)[:300]}); "
            "the previous index is still served; check the Milvus server, then retry"
        ) from exc
    try:
        collect(conn, generation, previous)
    except Exception as exc:  # noqa: BLE001  the new generation is live; the next write collects the rest
        log.warning("%s: could not remove what generation %d dropped (%s)", conn.where, generation, exc)
    return generation, manifest


def _manifest(papers: Sequence[Segment | KeptPaper], stamp: Stamp, generation: int, previous: Snapshot | None) -> dict:
    old_lines = previous.manifest.get("lines", {}) if previous is not None else {}
    lines = {}
    for item in papers:
        segment = item.paper.segment
        lines[segment] = len(pieces(_lines_bytes(item.lines))) if isinstance(item, Segment) else old_lines[segment]
    manifest = {
        **stamp_record(stamp, papers, previous, generation),
        "store_format": STORE_FORMAT,
        "papers": [_record(p.paper) for p in papers],
        "lines": lines,  # pieces of each segment's line anchors
    }
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    return manifest


def _lines_bytes(lines: np.ndarray) -> bytes:
    return np.ascontiguousarray(lines, dtype="<i4").reshape(-1, 3).tobytes()


def _insert_segments(conn: MilvusConnection, segments: list[Segment], generation: int) -> None:
    """Rows of the segments not in the collection yet (segments are named by content, so a
    present one holds the same rows)."""
    chunks = conn.chunks_collection(conn.dimension)
    unique = list({s.paper.segment: s for s in segments}.values())
    present: set[str] = set()
    for batch in batches([s.paper.segment for s in unique], ID_BATCH):
        found = conn.client.query(chunks, filter=f"segment in {quoted(batch)} and ordinal == 0", output_fields=["segment"], limit=len(batch))
        present |= {r["segment"] for r in found}
    for segment in unique:
        if segment.paper.segment in present:
            continue
        rows = _segment_rows(conn, segment, generation)
        for batch in batches(rows, BATCH):
            conn.client.insert(chunks, list(batch))
        insert_pieces(conn, "lines", pieces(_lines_bytes(segment.lines)), generation, segment=segment.paper.segment)


def _segment_rows(conn: MilvusConnection, segment: Segment, generation: int) -> list[dict]:
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
                insert_pieces(conn, name, pieces(value.encode("utf-8")), generation, segment=sid, key=f"{sid}/{ordinal}")
                fields[name] = ""
        rows.append({
            "pk": f"{sid}/{ordinal}", "segment": sid, "ordinal": ordinal, "born": generation, "chunk_id": chunk.chunk_id,
            **fields, "vector": vectors[ordinal].tolist(), "words": keyword_text(chunk.embed_text),
        })
    return rows


def collect(conn: MilvusConnection, live: int, previous: Snapshot | None) -> None:
    """Delete what no generation up to `live` needs: rows of writes that never committed
    (born after it), then the segments of older generations that `live` dropped, then those
    generations' records (last: a collection killed half-way is redone from them)."""
    client = conn.client
    if not client.has_collection(conn.records):
        return
    client.delete(conn.records, filter=f"generation > {live}")
    for name in client.list_collections():
        if name.startswith(f"{conn.collection}_chunks_") and client.has_collection(name):
            client.delete(name, filter=f"born > {live}")
    by_number = {int(h["generation"]): h for h in heads(conn)}
    older = sorted(g for g in by_number if g < live)
    if not older:
        return
    keep = _segments_of(conn, by_number[live], None) if live in by_number else None
    if keep is None:
        return  # the live generation unreadable: deleting by it could drop what it needs
    for generation in older:
        dropped = _segments_of(conn, by_number[generation], previous if previous and previous.generation == generation else None)
        dead = sorted((dropped or set()) - keep)
        for batch in batches(dead, ID_BATCH):
            client.delete(conn.records, filter=f"segment in {quoted(batch)}")
            for name in client.list_collections():
                if name.startswith(f"{conn.collection}_chunks_"):
                    client.delete(name, filter=f"segment in {quoted(batch)}")
        client.delete(conn.records, filter=f"generation == {generation} and kind == 'manifest'")
        client.delete(conn.records, filter=f"generation == {generation} and kind == 'head'")
    live_chunks = json.loads(by_number[live]["body"]).get("chunks")
    for name in client.list_collections():  # collections of another dimension that no head names
        if name.startswith(f"{conn.collection}_chunks_") and name != live_chunks:
            conn.drop(name)


def _segments_of(conn: MilvusConnection, head: dict, snapshot: Snapshot | None) -> set[str] | None:
    """The segments a generation names; None when its records cannot be read (then it has
    been collected already: its records go last)."""
    if snapshot is not None:
        return {p.segment for p in snapshot.papers}
    try:
        manifest = read_manifest(conn, int(head["generation"]), json.loads(head["body"])["pieces"])
        return {p["segment"] for p in manifest["papers"]}
    except (ValueError, KeyError, TypeError, zlib.error):
        return None
