"""The records collection of a Milvus store: generation heads, and what does not fit one VARCHAR
kept as numbered base64 pieces (manifests, zlib JSON: 40k papers are megabytes, past VARCHAR's
64 KiB; line anchors; a chunk's oversized fields). Writing and reading those rows."""

from __future__ import annotations

import base64
import json
import zlib

from culture_rag.index.milvus.client import TOP_MAX, MilvusConnection, batches

PIECE = 60_000  # base64 characters per record piece


def pieces(data: bytes) -> list[str]:
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i : i + PIECE] for i in range(0, len(encoded), PIECE)] or [""]


def record_row(pk: str, kind: str, generation: int, body: str, segment: str = "", part: int = 0) -> dict:
    return {"pk": pk, "kind": kind, "generation": generation, "segment": segment, "part": part, "body": body, "unused": [0.0, 0.0]}


def insert_pieces(conn: MilvusConnection, kind: str, parts: list[str], generation: int, segment: str = "", key: str = "") -> None:
    name = key or (f"{segment}" if segment else f"{generation}")
    rows = [record_row(f"{kind}/{name}/{i}", kind, generation, piece, segment, i) for i, piece in enumerate(parts)]
    for batch in batches(rows, 16):  # 16 pieces are a megabyte
        conn.client.insert(conn.records, list(batch))


def read_pieces(conn: MilvusConnection, expr: str, count: int | None = None) -> bytes:
    """The bytes of the pieces `expr` selects: `count` of them, or as many as there are;
    ValueError when some are missing."""
    rows = conn.client.query(conn.records, filter=expr, output_fields=["part", "body"], limit=TOP_MAX)
    parts = {int(r["part"]): r["body"] for r in rows}
    count = len(parts) if count is None else count
    if sorted(parts) != list(range(count)):
        raise ValueError(f"{len(parts)} of {count} pieces")
    return base64.b64decode("".join(parts[i] for i in range(count)), validate=True)


def read_manifest(conn: MilvusConnection, generation: int, count: int) -> dict:
    """A generation's manifest, from its `count` pieces; ValueError, KeyError, TypeError or
    zlib.error when they are damaged."""
    return json.loads(zlib.decompress(read_pieces(conn, f"kind == 'manifest' and generation == {generation}", count)))


def heads(conn: MilvusConnection) -> list[dict]:
    """The generations' head rows, newest first."""
    if not conn.loaded(conn.records):
        return []
    rows = conn.client.query(conn.records, filter="kind == 'head'", output_fields=["generation", "body"], limit=TOP_MAX)
    return sorted(rows, key=lambda r: -int(r["generation"]))


def live_head(conn: MilvusConnection) -> dict | None:
    """The live generation's head: the highest, as a write commits by inserting its head last."""
    found = heads(conn)
    return found[0] if found else None
