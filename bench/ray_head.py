"""A Ray head on loopback for the Ray build's test and benchmark: started in a session of its
own, and stopped by that session's process ids, never by name (`ray stop` stops every Ray
process on the machine by name, another user's included).

Everything listens on 127.0.0.1 and nothing calls out: the node address is loopback,
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps a driver on this machine from swapping 127.0.0.1 for
the machine's external address, usage stats are off, and there is no dashboard."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The environment of the head and of every driver that connects to it.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@dataclass(frozen=True)
class Head:
    address: str  # host:port, for `build --ray`
    session: int  # the session id of every process the head started
    temp_dir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_head(num_cpus: int = 2, startup_s: float = 60.0) -> Iterator[Head]:
    """A Ray head with `num_cpus` CPUs on 127.0.0.1, up until the block ends; then every
    process of its session is stopped, SIGTERM first, SIGKILL for any left after 10 s."""
    port = free_port()
    # Short: Ray's socket paths under it must stay within the 107 bytes of a Unix socket name.
    temp_dir = Path(tempfile.mkdtemp(prefix="cr-ray-", dir="/tmp"))
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={num_cpus}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    log = open(temp_dir / "head.log", "wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **LOOPBACK_ENV})
    try:
        _wait_for_port(port, head, startup_s, temp_dir / "head.log")
        yield Head(f"127.0.0.1:{port}", head.pid, temp_dir)
    finally:
        left = stop_session(head)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes still ran after SIGKILL: {left}")


def _wait_for_port(port: int, head: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"the Ray head exited at start:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            time.sleep(1.0)  # the GCS listens before the raylet registers; give it a moment
            return
        time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


def session_processes(session: int) -> dict[int, str]:
    """Live processes of a session, by pid, with their command names (zombies excluded: they
    are gone, only not yet reaped)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            found[int(entry.name)] = name
    return found


def stop_session(head: subprocess.Popen, grace_s: float = 10.0) -> dict[int, str]:
    """Stop the head's session: SIGTERM to its process group (the head, GCS, raylet, agents),
    then SIGKILL by pid to every process still in the session after `grace_s` (actors and
    workers have process groups of their own, but not sessions). Returns what SIGKILL left."""
    session = head.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_processes(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)
    deadline = time.monotonic() + 5
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    return session_processes(session)
