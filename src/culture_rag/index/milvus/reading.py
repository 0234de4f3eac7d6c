"""Opening a generation of a Milvus store: its head and manifest read and verified (checksum,
model, format, chunks collection) before a snapshot of it is served; a paper's line anchors."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np

from culture_rag.errors import IndexLoadError, IndexModelMismatch
from culture_rag.index import layout
from culture_rag.index.layout import MANIFEST_DIGEST, manifest_digest
from culture_rag.index.milvus.client import MilvusConnection
from culture_rag.index.milvus.records import read_manifest, read_pieces
from culture_rag.index.milvus.schema import STORE_FORMAT
from culture_rag.index.milvus.snapshot import MilvusSnapshot
from culture_rag.types import PaperInfo, PaperMeta

_SEGMENT = re.compile(r"[0-9a-f]{24}")


def is_head_of(head: dict | None, snapshot: MilvusSnapshot) -> bool:
    """Whether `head` is the head row of the generation `snapshot` holds."""
    return head is not None and int(head["generation"]) == snapshot.generation and (
        json.loads(head["body"]).get("digest") == snapshot.digest
    )


def load_generation(conn: MilvusConnection, head: dict, fingerprint: str) -> MilvusSnapshot:
    """The generation `head` commits, verified for a model of `fingerprint` and `conn.dimension`."""
    generation = int(head["generation"])
    where = f"{conn.where}, generation {generation}"
    try:
        body = json.loads(head["body"])
        manifest = read_manifest(conn, generation, body["pieces"])
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        raise IndexLoadError(where, f"damaged generation record ({exc}); run `culture-rag build` to write it again") from None
    if not isinstance(manifest, dict) or manifest.get(MANIFEST_DIGEST) != manifest_digest(manifest) or body.get("digest") != manifest.get(MANIFEST_DIGEST):
        raise IndexLoadError(where, "checksum mismatch: the manifest is damaged or was changed; run `culture-rag build`")
    model = manifest.get("model", {})
    if model.get("fingerprint") != fingerprint:
        raise IndexModelMismatch(
            where,
            f"built with model {model.get('fingerprint')!r} but the configured model is {fingerprint!r}; "
            "rebuild with `culture-rag build` or configure the original model",
        )
    if model.get("dimension") != conn.dimension:
        raise IndexModelMismatch(where, f"dimension {model.get('dimension')} does not match the model's {conn.dimension}; rebuild")
    if manifest.get("format") != layout.FORMAT or manifest.get("store_format") != STORE_FORMAT:
        raise IndexModelMismatch(
            where, f"written in index format {manifest.get('format')!r}, this version reads {layout.FORMAT}; "
            "run `culture-rag build` to index the papers again"
        )
    chunks = body.get("chunks")
    if chunks != conn.chunks_collection(conn.dimension) or not conn.loaded(chunks):
        raise IndexLoadError(where, f"its chunks collection {chunks!r} is missing; run `culture-rag build`")
    dim = next(f["params"]["dim"] for f in conn.client.describe_collection(chunks)["fields"] if f["name"] == "vector")
    if int(dim) != conn.dimension:
        raise IndexModelMismatch(where, f"collection {chunks} holds vectors of dimension {dim}, the model's is {conn.dimension}; rebuild")
    papers = tuple(_paper_of_record(where, n, r) for n, r in enumerate(manifest.get("papers", [])))
    return MilvusSnapshot(conn, generation, manifest, papers, chunks)


def _paper_of_record(where: str, number: int, record: dict) -> PaperInfo:
    try:
        found = PaperMeta.from_dict(record["found"]) if record.get("found") is not None else None
        info = PaperInfo(**{**record, "authors": tuple(record["authors"]), "found": found, "ocr_pages": tuple(record.get("ocr_pages", ()))})
    except (TypeError, KeyError, AttributeError) as exc:
        raise IndexLoadError(where, f"damaged manifest: paper record {number} is malformed ({exc})") from None
    if not (isinstance(info.segment, str) and _SEGMENT.fullmatch(info.segment)):
        raise IndexLoadError(where, f"damaged manifest: paper {number} names segment {info.segment!r}")
    return info


def line_anchors(conn: MilvusConnection, manifest: dict, paper: PaperInfo) -> np.ndarray:
    """A paper's line anchors (sourcemap.py), as rows of 3 int32, verified."""
    where = f"{conn.where}, lines of {paper.paper_id}"
    count = manifest.get("lines", {}).get(paper.segment)
    try:
        data = read_pieces(conn, f"kind == 'lines' and segment == '{paper.segment}'", int(count))
    except (ValueError, TypeError) as exc:
        raise IndexLoadError(where, f"missing or damaged ({exc}); rebuild with `culture-rag build`") from None
    if len(data) % 12:
        raise IndexLoadError(where, f"{len(data)} bytes, not rows of 3 int32; rebuild with `culture-rag build`")
    return np.frombuffer(data, dtype="<i4").reshape(-1, 3).copy()
