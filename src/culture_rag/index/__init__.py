"""The index: immutable per-paper segments and merged parts, plus generations switched
atomically, behind a small store interface (store.Store).

    layout.py    what a generation is: records, files, format version, the Snapshot Protocol
    snapshot.py  a local generation opened on demand (parts mapped, papers read when touched)
    reading.py   opening a generation, every file verified before it is parsed
    writing.py   writing segments, parts and a generation (the manifest's one author), the
                 merge policy, garbage collection
    store.py     the Store Protocol and LocalStore, an index folder on this machine
    factory.py   open_store: the store the settings name
    milvus/      MilvusStore, an index in a Milvus server (imported only when used)
    dense.py     FAISS search of a part's vectors
    lexical.py   the keyword index: BM25 postings over stemmed words
    catalog.py   the library's filters: papers by author, year and title words

Queries need no storage code: dense.py and lexical.py search what a snapshot maps.
"""

from culture_rag.index.factory import open_store
from culture_rag.index.layout import (
    CURRENT,
    FORMAT,
    LINES_FILE,
    MANIFEST_DIGEST,
    KeptPaper,
    KeywordSearch,
    ModelInfo,
    PaperInfo,
    Segment,
    Snapshot,
    library_versions,
    manifest_digest,
    segment_id,
)
from culture_rag.index.reading import generations, load_snapshot, read_chunks, read_current, read_lines
from culture_rag.index.snapshot import LocalSnapshot
from culture_rag.index.store import LocalStore, Store
from culture_rag.index.writing import Stamp, write_generation, write_lock

__all__ = [
    "CURRENT", "FORMAT", "LINES_FILE", "MANIFEST_DIGEST", "KeptPaper", "KeywordSearch", "LocalSnapshot", "LocalStore", "ModelInfo", "PaperInfo",
    "Segment", "Snapshot", "Stamp", "Store", "generations", "library_versions", "load_snapshot", "manifest_digest",
    "open_store", "read_chunks", "read_current", "read_lines", "segment_id", "write_generation", "write_lock",
]
