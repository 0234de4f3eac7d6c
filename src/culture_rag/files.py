"""Files: content digests, all-or-nothing writes, names that do not clash, ASCII slugs.

An all-or-nothing write fills a temporary sibling of the target, syncs it to disk and renames
it over the target, so a crash or a concurrent writer leaves the old file or the new one, never
half of either. Temporary names end in `.tmp-<pid>`: the index's garbage collection sweeps
`*.tmp-*`, and the pid tells which process left one behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def temporary_sibling(final: Path) -> Path:
    """A name beside `final` that no other process or thread writing `final` uses."""
    return final.with_name(f"{final.name}.{threading.get_ident()}.tmp-{os.getpid()}")


@contextlib.contextmanager
def replacing(final: Path, *, folder: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling of `final` (a new empty folder when `folder`) to fill; when the
    block ends its contents are synced, then it replaces `final` and the parent folder is synced.
    On an error it is removed and `final` is left as it was."""
    tmp = temporary_sibling(final)
    _remove(tmp)
    try:
        if folder:
            tmp.mkdir(parents=True)
        yield tmp
        sync_tree(tmp)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)  # a full disk must not stay full of our leftovers
        raise
    fsync_dir(final.parent)


def write_text(path: Path, text: str, mode: int | None = None) -> None:
    """`text` as the whole of `path`, all or nothing; with `mode`, the file never exists with
    other permissions (it is created with them)."""
    with replacing(path) as tmp:
        if mode is None:
            tmp.write_text(text, encoding="utf-8")
        else:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w", encoding="utf-8") as out:
                out.write(text)


def sync_tree(path: Path) -> None:
    """fsync a file, or a folder's files and folders, innermost first: a rename that outlives a
    power cut must not point at files whose data never reached the disk."""
    if path.is_dir():
        for inner in sorted(path.rglob("*"), reverse=True):
            fsync_file(inner) if inner.is_file() else fsync_dir(inner)
        fsync_dir(path)
    else:
        fsync_file(path)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def unique_name(name: str, taken: Callable[[str], bool]) -> str:
    """`name` if it is not `taken`, else the first free of name-2, name-3, … (numbered before
    the suffix: paper-2.pdf)."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 2
    while taken(candidate):
        candidate, n = f"{stem}-{n}{suffix}", n + 1
    return candidate


def ascii_fold(text: str) -> str:
    """`text` in ASCII: accents dropped, look-alikes (full-width letters, ligatures) folded,
    what has no ASCII form removed."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def ascii_slug(text: str, keep: str = "a-z0-9", limit: int = 80, trim: str = "-", lower: bool = True) -> str:
    """`text` folded to ASCII, each run of characters outside `keep` (a regex class body) one
    dash, `trim` characters stripped from both ends, at most `limit` long; "" when nothing is left."""
    folded = ascii_fold(text)
    slug = re.sub(f"[^{keep}]+", "-", folded.lower() if lower else folded).strip(trim)
    return slug[:limit].strip(trim)
