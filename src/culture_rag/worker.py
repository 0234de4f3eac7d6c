"""A worker process under limits, JSON over a pipe: the PDF parser (ingest) and the page renderer
(sourceview) each run hostile input in one reusable child process, with an address-space limit
and the parent's wall-clock timeout, so a hang, crash or memory blow-up costs one request and
the child is replaced. Messages are JSON (and raw bytes), never pickles.

The child side: `contain` first, then import what the work needs, then `ready`, then serve
`requests`. The parent side: a `Worker`. Light on purpose: the child imports this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Iterator

STARTUP_TIMEOUT_S = 120.0  # a fresh interpreter importing the PDF readers on a busy machine; not part of any request's budget


# --- in the child ------------------------------------------------------------------------------


def contain(parent_pid: int | None) -> None:
    """Die with the parent (a build killed with SIGKILL must not leave an orphan spinning on a
    hostile PDF), and keep the readers' warnings about odd files out of the parent's log."""
    _die_with_parent(parent_pid)
    logging.disable(logging.WARNING)


def _die_with_parent(parent_pid: int | None) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's kill() on timeout still applies
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before prctl took effect


def ready(conn, memory_mb: int) -> None:
    """Limit the address space, then tell the parent: imports before this are start-up, not the
    first request's time."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # asking for more than the hard limit would kill the worker at start
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send_bytes(b'{"ready": true}')


def requests(conn) -> Iterator[dict]:
    """The parent's requests, until it closes the pipe."""
    while True:
        try:
            yield json.loads(conn.recv_bytes())
        except EOFError:
            return


# --- in the parent -----------------------------------------------------------------------------


class Worker:
    """One child process running `target(conn, *args)`, started by `start` and replaced by the
    owner after a failure. `name` says what it is in messages ("the PDF parser process")."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self, target: Callable, args: tuple, error: Callable[[str], Exception]) -> None:
        """Start the child and wait until it is ready; `error(detail)` is raised when it cannot."""
        self.stop()
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=target, args=(child, *args), daemon=True)
        try:
            proc.start()
        except OSError as exc:  # out of processes or memory: this request fails, the next one retries
            parent.close()
            raise error(f"cannot start {self.name} ({exc.strerror or exc}); free memory and retry") from exc
        finally:
            child.close()
        self._proc, self._conn = proc, parent
        try:
            started = parent.poll(STARTUP_TIMEOUT_S) and json.loads(parent.recv_bytes()).get("ready") is True
        except (EOFError, OSError, ValueError):
            started = False
        if not started:
            exit_info = self.exit_info()
            self.stop()
            raise error(f"{self.name} did not start ({exit_info}); check parse_memory_mb and retry")

    def send(self, request: dict) -> None:
        self._conn.send_bytes(json.dumps(request).encode())

    def receive(self, timeout_s: float) -> bytes | None:
        """The child's next message, None when none came within `timeout_s`. EOFError or
        OSError when the child died."""
        if not self._conn.poll(max(0.0, timeout_s)):
            return None
        return self._conn.recv_bytes()

    def exit_info(self) -> str:
        """How the child ended, for messages."""
        proc = self._proc
        if proc is None:
            return "no process"
        proc.join(2)  # the pipe closes a moment before the process is reaped
        code = proc.exitcode
        if code is None:
            return "still running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def stop(self) -> None:
        """Kill the child and its process group (the tesseract an OCR run started, when the
        child made one of its own)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.pid is not None:
                with contextlib.suppress(OSError):  # no such group unless the child made it
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.join(5)
