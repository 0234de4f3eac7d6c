"""The choice of store by settings: the one module that knows every kind of store, so that the
stores themselves (store.LocalStore, milvus.MilvusStore) need not know of each other."""

from __future__ import annotations

from pathlib import Path

from culture_rag.index.store import LocalStore, Store


def open_store(settings, fingerprint: str, dimension: int) -> Store:
    """The store `settings.store` names, for vectors of a model's `fingerprint` and `dimension`."""
    if settings.store == "milvus":
        from culture_rag.index.milvus import MilvusStore  # pymilvus is imported only by those who use it

        lock_dir = Path(settings.cache_dir) / "milvus-locks" / settings.milvus_collection
        return MilvusStore(
            settings.milvus_uri, settings.milvus_collection, fingerprint, dimension, settings.milvus_token, lock_dir,
            shards=settings.milvus_shards, replicas=settings.milvus_replicas,
        )
    return LocalStore(settings.index_dir, fingerprint, dimension, settings.keep_generations)
