"""The store interface everything else writes and reads generations through, and the store of
one local index folder. A store of another kind (issue 15: several machines; milvus.py)
implements the same Protocol, and factory.open_store picks one by settings; nothing outside this
package knows where or how a generation is kept."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from culture_rag.errors import IndexLoadError, PaperNotFoundError
from culture_rag.index.layout import CURRENT, MANIFEST_DIGEST, KeptPaper, ModelInfo, PaperInfo, Segment, Snapshot
from culture_rag.index.reading import generations, load_snapshot, read_current, read_lines
from culture_rag.index.writing import Stamp, write_generation, write_lock


class Store(Protocol):
    """Generations of one index: read, verified, written whole and switched atomically."""

    def open(self) -> Snapshot:
        """The live generation, verified; IndexLoadError naming the index when there is none."""

    def snapshot(self, held: Snapshot | None = None) -> Snapshot | None:
        """The live generation: `held` when it still is, else loaded; None when there is no index."""

    def is_live(self, snapshot: Snapshot) -> bool:
        """Whether `snapshot` is still the generation a new reader would get."""

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """One writer at a time, across processes."""

    def write(
        self,
        papers: Sequence[Segment | KeptPaper],
        *,
        model: ModelInfo,
        settings: Mapping[str, str],
        corpus_dir: str,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        """A new generation of `papers` (kept ones are `previous`'s), made live; returned."""

    def remove(self, paper_id: str, previous: Snapshot) -> Snapshot:
        """A new generation of `previous` without the paper, made live; returned."""

    def lines(self, snapshot: Snapshot, paper: PaperInfo) -> np.ndarray:
        """A paper's line anchors (sourcemap.py), verified, read on demand."""


def _tail(path: Path, size: int = 200) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, 2) - size))
        return fh.read()


class LocalStore:
    """An index folder on this machine (index.layout describes its files)."""

    def __init__(self, index_dir: str | Path, fingerprint: str, dimension: int, keep: int = 2) -> None:
        self.index_dir = Path(index_dir)
        self.fingerprint, self.dimension, self.keep = fingerprint, dimension, keep

    def open(self) -> Snapshot:
        return load_snapshot(self.index_dir, self.fingerprint, self.dimension)

    def snapshot(self, held: Snapshot | None = None) -> Snapshot | None:
        # Re-verifying a large index costs far more than a write, so a live one is kept.
        if held is not None and self.is_live(held):
            return held
        # Not read_current(): a damaged CURRENT must reach load_snapshot, which falls back.
        if (self.index_dir / CURRENT).exists() or generations(self.index_dir):
            return self.open()
        return None

    def is_live(self, snapshot: Snapshot) -> bool:
        try:
            live = read_current(self.index_dir) == snapshot.path.name
            tail = _tail(snapshot.path / "manifest.json") if live else b""
        except (IndexLoadError, OSError):
            return False
        # The digest is the manifest's last field: comparing the file's end with the digest held
        # in memory avoids parsing 20 MB of JSON (40k papers) before every write.
        digest = snapshot.manifest.get(MANIFEST_DIGEST)
        # (spaced: as json.dumps wrote manifests before the canonical form was the file)
        ends = (f'"{MANIFEST_DIGEST}":"{digest}"}}', f'"{MANIFEST_DIGEST}": "{digest}"}}')
        return digest is not None and tail.endswith(tuple(e.encode() for e in ends))

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return write_lock(self.index_dir)

    def write(
        self,
        papers: Sequence[Segment | KeptPaper],
        *,
        model: ModelInfo,
        settings: Mapping[str, str],
        corpus_dir: str,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        return write_generation(self.index_dir, papers, Stamp(model, settings, corpus_dir), self.keep, previous)

    def remove(self, paper_id: str, previous: Snapshot) -> Snapshot:
        return write_generation(self.index_dir, kept_without(paper_id, previous), Stamp.of(previous), self.keep, previous)

    def lines(self, snapshot: Snapshot, paper: PaperInfo) -> np.ndarray:
        return read_lines(self.index_dir, snapshot.manifest, paper)


def kept_without(paper_id: str, previous: Snapshot) -> list[KeptPaper]:
    """Every paper of `previous` but one, kept: what any store writes to remove a paper."""
    if all(p.paper_id != paper_id for p in previous.papers):
        raise PaperNotFoundError(paper_id)
    return [KeptPaper(p) for p in previous.papers if p.paper_id != paper_id]

