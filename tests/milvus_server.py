"""A Milvus Lite server on loopback for the Milvus store's tests (a correctness stand-in for a
Milvus Standalone or Distributed server, not a benchmark target). Started once per session in a
process group of its own, stopped by that group's id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

START_S = 60.0


def _answers(uri: str) -> bool:
    from pymilvus import MilvusClient

    from culture_rag.index.milvus import GRPC_OPTIONS

    try:
        # The store's options: pymilvus shares this first channel with every later client
        # of the address, and a channel with its default pings is sent away by the server.
        client = MilvusClient(uri=uri, timeout=2, grpc_options=GRPC_OPTIONS)
        client.list_collections()
        client.close()
        return True
    except Exception:  # noqa: BLE001  not up yet
        return False


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory):
    from conftest import free_port

    pytest.importorskip("pymilvus")
    data = tmp_path_factory.mktemp("milvus-lite")
    port = free_port()
    command = [str(Path(sys.executable).with_name("milvus-lite")), "server", "--data-dir", str(data / "data"),
               "--host", "127.0.0.1", "--port", str(port)]
    log = open(data / "server.log", "wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while not _answers(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Milvus Lite did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group started above, by its id
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
