"""Stand-ins for hostile PDFs, for the contained parser's tests.

`hostile_worker` replaces `culture_rag.ingest.build._worker` as the child process's entry point
(the parser spawns a fresh interpreter, which imports this module by name). It behaves like the
real worker except for files whose names ask for trouble: a crash (SIGSEGV), a hang, or a
memory blow-up. Real PDFs that reliably do this to today's pypdf do not exist; these make
the parent's handling of each failure testable.
"""

from __future__ import annotations

import os
import signal
import time


def hostile_worker(conn, memory_mb: int, parent_pid: int | None = None, ocr: dict | None = None) -> None:
    from culture_rag.ingest import build as ingest

    real_read_paper = ingest.read_paper

    def read_paper(path, password=None, meta=None, *ocr_args):
        if "crash" in path.name:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "hang" in path.name:
            time.sleep(3600)  # sleeps rather than spins: the machine is shared
        if "hog" in path.name:
            hoard = []
            while True:  # address space, not RAM: bytes(n) is calloc'd, its pages never touched
                hoard.append(bytes(64 << 20))
        return real_read_paper(path, password, meta, *ocr_args)

    ingest.read_paper = read_paper
    ingest._worker(conn, memory_mb, parent_pid, ocr)
