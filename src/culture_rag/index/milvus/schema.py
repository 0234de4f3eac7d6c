"""What the Milvus store's two collections hold, and their making: the fields and indexes of
`<name>_chunks_<dim>` (a chunk's record, vector, sentence vectors, keyword tokens with BM25) and
of `<name>_records` (heads and pieces, milvus.records), and the keyword tokens themselves.

Keyword tokens are the local store's own stems, so BM25 sees the same terms. Milvus Lite has
only the `standard` and `jieba` tokenizers (no `whitespace`), so every stored token is written
in [a-z0-9]+ (a stem outside it in hex, keyword_token): any tokenizer keeps such a token whole,
and one schema serves Lite and a real cluster."""

from __future__ import annotations

import re

from culture_rag.index.lexical import content_words
from culture_rag.index.milvus.client import MilvusConnection

STORE_FORMAT = 1
VARCHAR_MAX = 65_535  # bytes: Milvus's largest VARCHAR
K1, B = 1.5, 0.75  # the local keyword index's BM25 parameters (lexical.K1, lexical.B)
_PLAIN = re.compile(r"[a-z0-9]+")
_HEXLIKE = re.compile(r"x[0-9a-f]*")


def keyword_token(word: str) -> str:
    """A stem as a token every Milvus tokenizer keeps whole and as it is: [a-z0-9]+ stems stay,
    others (and stems that look like an encoded one) become "x" + their UTF-8 in hex."""
    if _PLAIN.fullmatch(word) and not _HEXLIKE.fullmatch(word):
        return word
    return "x" + word.encode("utf-8").hex()


def keyword_text(text: str) -> str:
    """The keyword field of a chunk, or the BM25 query of a question: its stems as tokens."""
    return " ".join(keyword_token(w) for w in content_words(text))


def ensure_collections(conn: MilvusConnection) -> None:
    """The records collection and the chunks collection of `conn`'s dimension, made if missing."""
    from pymilvus import DataType, Function, FunctionType

    client = conn.client
    if not client.has_collection(conn.records):
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
        client.create_collection(conn.records, schema=schema, index_params=index, consistency_level="Strong")
        _replicate(conn, conn.records)
    chunks = conn.chunks_collection(conn.dimension)
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
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=conn.dimension)
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
            chunks, schema=schema, index_params=index, consistency_level="Strong", num_shards=conn.shards
        )
        _replicate(conn, chunks)


def _replicate(conn: MilvusConnection, name: str) -> None:
    """A new collection loads with one replica; reloaded with `replicas` when more are wanted."""
    if conn.replicas > 1:
        conn.client.release_collection(name)
        conn.client.load_collection(name, replica_number=conn.replicas)
