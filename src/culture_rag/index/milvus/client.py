"""Talking to a Milvus server for the Milvus store: the client, connected on first use (and refused
at once where nothing listens), whose errors are the index's; collections loaded before they
answer; the request sizes and filter literals every query of the store uses."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from culture_rag.errors import IndexLoadError

BATCH = 256  # rows per insert
ID_BATCH = 512  # ids or segments per filter expression
TOP_MAX = 16_384  # Milvus's largest limit of one search or query

CONNECT_TIMEOUT_S = 60
# gRPC keepalive pings far apart and never on idle channels: a gRPC server's default policy
# (Milvus Lite's too) allows one ping in 5 minutes without data and answers more with GOAWAY
# "too_many_pings", after which the shared channel to it fails. pymilvus pings every 10 s,
# also during a call that waits longer than that. pymilvus shares one channel per address,
# whatever options later clients pass: every client of ours, the tests' too, passes these.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 600_000}


def quoted(values) -> str:
    """A list literal of ids for a filter; ids are hex digests or our own keys (no quotes)."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MilvusConnection:
    """The collections of one `collection` name on the Milvus server at `uri`, for vectors of
    `dimension` (milvus.schema says what they hold). `shards` spread a new chunks collection's
    writes over that many channels; `replicas` load each collection on that many query-node
    groups, for read throughput and failover."""

    def __init__(
        self, uri: str, collection: str, dimension: int, token: str | None = None, client=None, shards: int = 1, replicas: int = 1
    ) -> None:
        self.uri, self.collection, self.dimension = uri, collection, dimension
        self.token, self.shards, self.replicas = token, shards, replicas
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

    def loaded(self, name: str) -> bool:
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

    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._ready.discard(name)

    def chunks_collection(self, dimension: int) -> str:
        # Named by dimension: a rebuild with a model of another size writes beside the live one.
        return f"{self.collection}_chunks_{dimension}"


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
