"""The Library writes through its store alone, hands it whole segments and kept papers, and
names each added file once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import ARAGOG, make_settings

from culture_rag import Assistant, FileStatus
from culture_rag.index import KeptPaper, LocalStore, Segment
from culture_rag.library import Library


class RecordingStore:
    """A store that logs what it is asked and passes it on to a real one."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.written: list[list] = []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def logged(*args, **kwargs):
            self.calls.append(name)
            if name == "write":
                self.written.append(list(args[0]))
            return method(*args, **kwargs)

        return logged


def recording_library(tmp_path: Path, embedder) -> tuple[Library, RecordingStore]:
    # settings.index_dir points where nothing may be written: the store keeps the index elsewhere
    settings = make_settings(tmp_path / "not-the-index")
    store = RecordingStore(LocalStore(tmp_path / "index", embedder.fingerprint, embedder.dimension))
    return Library(settings, embedder, store=store), store


def test_the_library_reaches_its_index_only_through_its_store(tmp_path, corpus_copy, fake_embedder):
    library, store = recording_library(tmp_path, fake_embedder)
    built = library.build(corpus_copy)
    assert built.count(FileStatus.INDEXED) == 2
    assert library.add([ARAGOG / "distilbert.pdf"]).count(FileStatus.INDEXED) == 1
    assistant = Assistant(library=library)
    hit = assistant.search("distilled version of BERT smaller faster", k=1, papers=["distilbert"])[0]
    view = assistant.source_view(hit, image=False)  # a PDF's view reads its line anchors
    assert view.paper_id == hit.paper.paper_id == "distilbert" and view.page is not None
    removed = library.remove(hit.paper.paper_id)
    assert removed.count(FileStatus.REMOVED) == 1 and len(library.papers()) == 2
    assert {"lock", "snapshot", "write", "remove", "lines"} <= set(store.calls)
    assert not (tmp_path / "not-the-index" / "index").exists()
    reopened = Library(make_settings(tmp_path), fake_embedder)
    reopened.reload()
    assert [p.paper_id for p in reopened.papers()] == [p.paper_id for p in library.papers()]


def test_new_papers_reach_the_store_whole_and_unchanged_ones_as_kept(tmp_path, corpus_copy, fake_embedder):
    library, store = recording_library(tmp_path, fake_embedder)
    library.build(corpus_copy)
    (corpus_copy / "notes.txt").write_text("The puppet theatre of Grodno tours with marionettes and shadow plays.\n" * 3)
    library.build(corpus_copy)
    first, second = store.written
    assert all(isinstance(p, Segment) for p in first)
    kept = [p for p in second if isinstance(p, KeptPaper)]
    new = [p for p in second if isinstance(p, Segment)]
    assert [p.paper for p in kept] == list(library.papers())[:2] and [s.paper.source for s in new] == ["notes.txt"]
    for segment in first + new:
        n = len(segment.chunks)
        assert segment.vectors.shape == (n, fake_embedder.dimension) and segment.terms.size == n
        assert segment.sentence_vectors.shape[0] == sum(len(c.sentences) for c in segment.chunks)
        assert isinstance(segment.lines, np.ndarray) and segment.lines.shape[1] == 3


def test_an_added_file_is_named_once_and_its_outcome_says_what_was_given(tmp_path, fake_embedder):
    library = Library.open(make_settings(tmp_path), fake_embedder, create=True)
    assert library.snapshot is None
    given = []
    for folder in ("a", "b"):  # two uploads of one name: each is kept, under names that differ
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "Field Notes.txt"
        path.write_text(f"Field notes {folder} on the circus schools of Gomel and their acrobats.\n")
        given.append(path)
    report = library.add(given)
    assert [o.status for o in report.outcomes] == [FileStatus.INDEXED, FileStatus.INDEXED]
    assert sorted(o.given for o in report.outcomes) == sorted(str(p) for p in given)
    stored = sorted(o.source for o in report.outcomes)
    assert len(set(stored)) == 2 and sorted(p.name for p in library.corpus_dir.iterdir() if p.is_file()) == stored
    assert not (library.corpus_dir / ".incoming").exists()
