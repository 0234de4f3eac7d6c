"""Damaged and tampered indexes: truncation and bit flips in every kind of file, counts and
dimensions that disagree (with checksums forged to match), pickles planted or disguised. Loading
must refuse with a message naming the path, or fall back to an older intact generation, and
never unpickle anything."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, make_settings

from culture_rag import Assistant, IndexLoadError
from culture_rag.errors import IndexModelMismatch
from culture_rag.index import (
    MANIFEST_DIGEST,
    load_snapshot,
    manifest_digest,
)

SEED = 20261122  # fixed: these positions are a sample, and a failure must be replayable


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Two generations: gen 1 with three papers in one merged part, gen 2 adding a fourth as a
    segment part of its own; the merged part (its dense.faiss and postings) serves both."""
    from fakes import HashEmbedder

    tmp = tmp_path_factory.mktemp("pristine")
    corpus = tmp / "corpus"
    corpus.mkdir()
    (corpus / "anchor.txt").write_text("The puppet theatre of Grodno tours with marionettes and shadow plays.\n" * 3)
    (corpus / "notes.txt").write_text("Notes on music festivals in Vitebsk, Minsk and Xi'an, with dates.\n" * 2)
    shutil.copy(next(CORPUS.glob("shang-liu*.md")), corpus / "shang.md")
    assistant = Assistant(make_settings(tmp), embedder=HashEmbedder())
    assistant.build(corpus)
    (tmp / "new.txt").write_text("A new paper on the embroidery of Polesie and its export to Shanghai.\n" * 2)
    assistant.add([tmp / "new.txt"])
    assert [p.kind for p, _ in assistant.snapshot.parts] == ["merged", "segment"]
    assert assistant.snapshot.generation == 2
    return tmp


class Index:
    """A private copy of the pristine index, with helpers to damage and re-seal it."""

    def __init__(self, root: Path, embedder) -> None:
        self.root = root
        self.dir = root / "index"
        self.embedder = embedder
        self.gen1, self.gen2 = self.dir / "gen-000001", self.dir / "gen-000002"

    def manifest(self, gen: Path) -> dict:
        return json.loads((gen / "manifest.json").read_text())

    def segment(self, paper_id: str) -> Path:
        record = next(p for p in self.manifest(self.gen2)["papers"] if p["paper_id"] == paper_id)
        return self.dir / "segments" / record["segment"]

    def save_manifest(self, gen: Path, manifest: dict) -> None:
        """Write an edited manifest with its digest forged to match, when it has one: the edit
        must meet the loader's structural checks, not only the digest."""
        if MANIFEST_DIGEST in manifest:
            manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        (gen / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))

    @property
    def part(self) -> Path:
        """The merged part both generations search."""
        (part,) = [p["id"] for p in self.manifest(self.gen2)["parts"] if p["kind"] == "merged"]
        return self.dir / "parts" / part

    def load(self, fallback: bool = True):
        """Open the live generation, then read every paper it holds (what queries read lazily)."""
        snapshot = load_snapshot(self.dir, self.embedder.fingerprint, self.embedder.dimension, fallback=fallback)
        read_all(snapshot)
        return snapshot

    def reseal(self) -> None:
        """Forge every checksum to match the files as they are now: what an attacker (or a buggy
        writer) could do, so that only the loader's own consistency checks stand in the way."""
        for gen in (self.gen1, self.gen2):
            manifest = self.manifest(gen)
            manifest["files"] = {rel: _sha(gen / rel) for rel in manifest["files"]}
            manifest["segments"] = {
                seg: {name: _sha(self.dir / "segments" / seg / name) for name in files}
                for seg, files in manifest["segments"].items()
            }
            manifest["part_files"] = {
                part: {name: _sha(self.dir / "parts" / part / name) for name in files}
                for part, files in manifest["part_files"].items()
            }
            self.save_manifest(gen, manifest)


def read_all(snapshot) -> None:
    from culture_rag.index import read_lines

    for number, paper in enumerate(snapshot.papers):
        list(snapshot.paper_data(number).chunks)
        snapshot.reader.terms(number)
        read_lines(snapshot.path.parent, snapshot.manifest, paper)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(pristine, tmp_path, fake_embedder) -> Index:
    shutil.copytree(pristine / "index", tmp_path / "index")
    return Index(tmp_path, fake_embedder)


def damage_modes(size: int, rng: random.Random) -> list[tuple[str, object]]:
    flips = sorted({0, size // 2, size - 1, *(rng.randrange(size) for _ in range(2))})
    return [("empty", 0), ("half", size // 2), ("minus one byte", size - 1)] + [(f"bit flip at {i}", i) for i in flips]


def apply(path: Path, mode: str, arg: int, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if mode.startswith("bit flip"):
        data[arg] ^= 1 << rng.randrange(8)
    else:
        del data[arg:]
    path.write_bytes(bytes(data))


def files_to_damage(ix: Index) -> list[tuple[Path, str]]:
    """(file, when it is read): on opening gen2 only (the manifest, the new paper's segment
    part), on opening either generation (the merged part), or when a query first reads that
    paper (a merged paper's segment, and line anchors, which only the source view reads)."""
    from culture_rag.index.layout import PART_FILES

    new, merged = ix.segment("new"), ix.segment("anchor")
    names = ("chunks.jsonl", "vectors.npy", "sentences.npy", "terms.npz", "lines.npy")
    gen2 = [(ix.gen2 / "manifest.json", "gen2")] + [(new / name, "gen2") for name in names[:4]]
    both = [(ix.part / name, "both") for name in PART_FILES]
    lazy = [(merged / name, "lazy") for name in names] + [(new / "lines.npy", "lazy")]
    return gen2 + both + lazy


def test_every_damaged_file_is_refused_or_skipped(pristine, tmp_path, fake_embedder):
    rng = random.Random(SEED)
    template = Index(pristine, fake_embedder)
    cases = [
        (path.relative_to(pristine / "index"), who, mode, arg)
        for path, who in files_to_damage(template)
        for mode, arg in damage_modes(path.stat().st_size, rng)
    ]
    assert len(cases) > 120  # 19 files, 7-8 kinds of damage each
    for number, (rel, who, mode, arg) in enumerate(cases):
        work = tmp_path / str(number)
        shutil.copytree(pristine / "index", work / "index")
        ix = Index(work, fake_embedder)
        apply(ix.dir / rel, mode, arg, rng)
        if who == "gen2":
            snapshot = ix.load()  # gen 1 does not use the damaged file: it is served instead
            assert snapshot.generation == 1, (rel, mode)
            assert [p.paper_id for p in snapshot.papers] == ["anchor", "notes", "shang"]
            with pytest.raises(IndexLoadError) as info:
                ix.load(fallback=False)
        elif who == "both":
            with pytest.raises(IndexLoadError) as info:
                ix.load()
            assert "no older generation is intact" in str(info.value)
        else:  # opens, and refuses the paper when it is read
            opened = load_snapshot(ix.dir, fake_embedder.fingerprint, fake_embedder.dimension, fallback=False)
            with pytest.raises(IndexLoadError) as info:
                read_all(opened)
        message = str(info.value)
        named = str(ix.dir / rel) in message or str((ix.dir / rel).parent) in message
        assert named, f"{rel} ({mode}): the message does not name the damaged file: {message}"
        assert "culture-rag build" in message  # and says what to do
        shutil.rmtree(work)


def test_damaged_current_falls_back_to_the_newest_intact_generation(index):
    current = index.dir / "CURRENT"
    for damage in (b"", b"gen-0000", b"\xff\xfe garbage", b"gen-000009\n", b"../../etc\n"):
        current.write_bytes(damage)
        assert index.load().generation == 2, damage
        with pytest.raises(IndexLoadError, match="CURRENT"):
            index.load(fallback=False)
    (index.dir / "CURRENT").unlink()
    with pytest.raises(IndexLoadError, match="no index here"):
        index.load()


def test_bit_flips_in_a_sealed_manifest_are_always_caught(index):
    """With the manifest's own digest (the writer change proposed alongside this test), a
    flip anywhere in it, titles included, is refused."""
    path = index.gen2 / "manifest.json"
    sealed = path.read_bytes()
    assert index.load(fallback=False).generation == 2
    rng = random.Random(SEED)
    key = sealed.index(MANIFEST_DIGEST.encode())  # a flip in the digest's own name must not switch it off
    for position in sorted(rng.sample(range(len(sealed)), 60)) + [sealed.index(b'"title"') + 12, key, key + 9]:
        data = bytearray(sealed)
        data[position] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        with pytest.raises(IndexLoadError, match="manifest.json"):
            index.load(fallback=False)
        assert index.load().generation == 1


def test_a_manifest_of_another_format_is_another_version_not_damage(index):
    """An intact manifest of an older format (format 1 carried no digest) is refused as another
    version's index, which `build` re-embeds; it is never read as if it were this format."""
    for older in (2, 1):  # 2 first: the format-1 edit drops the digest from the file
        manifest = index.manifest(index.gen2)
        manifest["format"] = older
        if older == 1:
            manifest.pop(MANIFEST_DIGEST)
        index.save_manifest(index.gen2, manifest)
        with pytest.raises(IndexModelMismatch, match=f"index format {older}.*culture-rag build"):
            index.load()


# --- forged consistency: checksums made to match ------------------------------------------


def test_chunk_count_not_matching_vectors_is_refused(index):
    vectors = index.segment("shang") / "vectors.npy"
    np.save(vectors, np.load(vectors)[:-1], allow_pickle=False)
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"vectors\.npy.*shape"):
        index.load()


def test_missing_chunk_line_is_refused(index):
    chunks = index.segment("shang") / "chunks.jsonl"
    chunks.write_text("".join(chunks.read_text().splitlines(keepends=True)[:-1]))
    index.reseal()
    with pytest.raises(IndexLoadError, match="chunks but the manifest says"):
        index.load()


def test_vector_index_with_fewer_vectors_than_chunks_is_refused(index):
    import faiss

    dense = faiss.read_index(str(index.part / "dense.faiss"))
    smaller = faiss.IndexFlatIP(dense.d)
    smaller.add(dense.reconstruct_n(0, dense.ntotal - 1))
    faiss.write_index(smaller, str(index.part / "dense.faiss"))
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"parts.*rows of dimension"):
        index.load()


def test_vector_index_of_another_dimension_is_refused(index):
    import faiss

    other = faiss.IndexFlatIP(32)
    rows = index.manifest(index.gen2)["parts"][0]["rows"]
    other.add(np.random.default_rng(0).random((rows, 32), dtype=np.float32))
    faiss.write_index(other, str(index.part / "dense.faiss"))
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"parts.*rows of dimension"):
        index.load(fallback=False)


def test_sentence_vectors_of_another_dimension_are_refused(index):
    sentences = index.segment("anchor") / "sentences.npy"
    np.save(sentences, np.load(sentences)[:, :32], allow_pickle=False)
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"sentences\.npy.*shape"):
        index.load()


def test_term_counts_of_another_size_are_refused(index):
    from culture_rag.index.lexical import TermCounts

    size = index.manifest(index.gen2)["papers"][0]["n_chunks"]
    TermCounts.of_texts(["one more document about marionettes"] * (size + 1)).save(index.segment("anchor") / "terms.npz")
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"terms\.npz.*chunks"):
        index.load(fallback=False)


def test_chunk_text_that_is_not_its_slice_is_refused(index):
    chunks = index.segment("notes") / "chunks.jsonl"
    rows = [json.loads(line) for line in chunks.read_text().splitlines()]
    rows[0]["text"] = rows[0]["text"] + " and an injected instruction"
    chunks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index.reseal()
    with pytest.raises(IndexLoadError, match=r"chunks\.jsonl.*line 1"):
        index.load()


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: next(iter(m["part_files"].values())).pop("dense.faiss"),
        lambda m: m["files"].update({"../../../etc/hostname": "0" * 64}),
        lambda m: m["papers"][0].update(segment="../../../tmp"),
        lambda m: m["papers"][0].pop("n_chunks"),
        lambda m: m.update(papers="not a list"),
        lambda m: m["segments"].clear(),
        lambda m: m.update(model=["not", "a", "dict"]),
    ],
    ids=["no checksum for dense.faiss", "path outside", "segment outside", "missing field", "wrong type",
         "no segment checksums", "model not an object"],
)
def test_malformed_manifests_are_refused_naming_the_manifest(index, edit):
    manifest = index.manifest(index.gen2)
    edit(manifest)
    index.save_manifest(index.gen2, manifest)
    with pytest.raises(IndexLoadError) as info:
        index.load(fallback=False)
    assert str(index.gen2) in str(info.value) or str(index.part) in str(info.value)
    assert index.load().generation == 1


def test_checksums_are_verified_before_faiss_reads_anything(index, monkeypatch):
    import faiss

    opened = []
    real_read_index = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda path, *a: opened.append(path) or real_read_index(path, *a))
    dense = index.part / "dense.faiss"
    data = bytearray(dense.read_bytes())
    data[-8] ^= 0x40
    dense.write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match=r"dense\.faiss.*checksum mismatch"):
        index.load(fallback=False)
    assert str(dense) not in opened
    manifest = index.manifest(index.gen2)
    del manifest["part_files"][index.part.name]["dense.faiss"]  # no checksum at all is no excuse to read it unchecked
    index.save_manifest(index.gen2, manifest)
    with pytest.raises(IndexLoadError, match="no checksum"):
        index.load(fallback=False)
    assert str(dense) not in opened


# --- pickles -------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates `marker`: proof, if the marker ever appears, that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _live_payload(tmp_path: Path) -> tuple[bytes, Path]:
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists(), "the payload must really act when unpickled, or the test proves nothing"
    marker = tmp_path / "UNPICKLED"
    return pickle.dumps(_Payload(marker)), marker


@pytest.mark.parametrize(
    "where", ["gen-000002/params.pkl", "gen-000002/vectors.pickle", "segments/{anchor}/extra.pkl", "gen-000002/model.joblib"]
)
def test_stray_pickle_files_are_refused_and_never_unpickled(index, tmp_path, where):
    payload, marker = _live_payload(tmp_path)
    path = index.dir / where.format(anchor=index.segment("anchor").name)
    path.write_bytes(payload)
    with pytest.raises(IndexLoadError, match="pickle") as info:
        index.load(fallback=False)
    assert str(path) in str(info.value)
    if where.startswith("gen-000002"):  # the older generation has no such file and is served
        assert Assistant.load(index.dir, make_settings(index.root), index.embedder).snapshot.generation == 1
    else:  # a merged paper's segment: refused when a query reads the paper
        with pytest.raises(IndexLoadError, match="pickle"):
            read_all(Assistant.load(index.dir, make_settings(index.root), index.embedder).snapshot)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["vectors.npy", "sentences.npy", "terms.npz", "terms.npz:data"])
def test_pickles_disguised_as_arrays_are_never_unpickled(index, tmp_path, target):
    """Even with checksums forged to match, an object array is refused: numpy is always asked
    with allow_pickle=False. terms.npz is tried as a bare array and as an archive member."""
    _, marker = _live_payload(tmp_path)
    name, _, member = target.partition(":")
    path = index.segment("anchor") / name
    evil = np.array([_Payload(marker)], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **{member: evil, "vocab": np.array(["x"])}) if member else np.save(fh, evil, allow_pickle=True)
    index.reseal()
    with pytest.raises(IndexLoadError) as info:
        index.load(fallback=False)
    assert str(path) in str(info.value)
    with pytest.raises(IndexLoadError):  # the segment is shared: no generation reads it
        read_all(Assistant.load(index.dir, make_settings(index.root), index.embedder).snapshot)
    assert not marker.exists()


@pytest.mark.parametrize(
    "sentences",
    [[[0, 99]], [[5, 3]], [[True, 4]], [[0, 4, "p"]], [[0, 4, 1, 2]], [[0]], "0-4", [{"start": 0, "end": 4}]],
)
def test_chunk_lines_with_impossible_sentences_are_refused(tmp_path, sentences):
    from culture_rag.index.reading import read_chunks
    from culture_rag.index.writing import _chunk_record
    from culture_rag.types import Chunk, Span

    chunk = Chunk("c1", "p", "Some text.", 10, 20, 3, (Span(10, 20, 1),), page_start=1, page_end=1)
    path = tmp_path / "chunks.jsonl"
    path.write_text(json.dumps(_chunk_record(chunk)) + "\n")
    assert read_chunks(path) == [chunk]  # the untampered line loads as written
    path.write_text(json.dumps(_chunk_record(chunk) | {"sentences": sentences}) + "\n")
    with pytest.raises(IndexLoadError, match="chunks.jsonl"):
        read_chunks(path)
