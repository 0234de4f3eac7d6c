"""Fault injection at the index's write points.

`WritePoints` wraps every call that changes files under one folder (open for writing, np.save,
faiss.write_index, mkdir, replace/rename, unlink, rmtree, fsync) and counts them. At the k-th
it either raises an I/O error (a full disk, a failing device) or kills the process with
SIGKILL, before the operation runs. Counting a clean write first gives the number of points,
so a test can visit every one of them.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import signal
from pathlib import Path
from typing import Self

import numpy as np


class WritePoints:
    def __init__(self, root: Path, fail_at: int = 0, action: str = "enospc", skip: tuple[str, ...] = (".lock",)) -> None:
        self.root = str(Path(root).resolve())
        self.fail_at = fail_at  # 0: only count
        self.action = action  # "enospc", "eio" or "kill"
        self.skip = skip
        self.count = 0
        self.log: list[str] = []
        self._saved: list[tuple[object, str, object]] = []

    def _under_root(self, path) -> bool:
        if isinstance(path, int):
            return False
        try:
            resolved = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return resolved.startswith(self.root) and not resolved.endswith(self.skip)

    def hit(self, what: str) -> None:
        self.count += 1
        self.log.append(what)
        if self.count != self.fail_at:
            return
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        code = errno.ENOSPC if self.action == "enospc" else errno.EIO
        raise OSError(code, os.strerror(code), what)

    def _wrap(self, owner, name: str, is_write) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if is_write(*args, **kwargs):
                self.hit(f"{name} {args[0] if args and not isinstance(args[0], int) else ''}".strip())
            return original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def __enter__(self) -> Self:
        import faiss

        def writes_file(file, mode="r", *args, **kwargs):
            return any(c in mode for c in "wax+") and self._under_root(file)

        def first_under_root(path, *args, **kwargs):
            return self._under_root(path)

        def either_under_root(src, dst, *args, **kwargs):
            return self._under_root(src) or self._under_root(dst)

        self._wrap(builtins, "open", writes_file)
        self._wrap(io, "open", writes_file)  # Path.write_text and Path.open go through io.open
        self._wrap(np, "save", first_under_root)
        self._wrap(faiss, "write_index", lambda index, path, *a, **k: self._under_root(path))
        self._wrap(os, "mkdir", first_under_root)
        self._wrap(os, "replace", either_under_root)
        self._wrap(os, "rename", either_under_root)
        self._wrap(os, "unlink", first_under_root)
        self._wrap(shutil, "rmtree", first_under_root)
        self._wrap(os, "fsync", lambda fd: True)  # only index code syncs while a write runs
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()
