from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ARAGOG, make_settings

from culture_rag import Assistant, IndexLoadError, PaperNotFoundError, QueryError
from culture_rag.index import CURRENT, generations


@pytest.fixture
def built(tmp_path, corpus_copy, fake_embedder):
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    report = assistant.build(corpus_copy)
    return assistant, report


def test_build_indexes_both_papers(built):
    assistant, report = built
    assert report.count("indexed") == 2 and report.embedded_chunks == report.total_chunks > 20
    titles = {p.title for p in assistant.papers()}
    assert "On the International Development of Cultural Industry in the Belt and Road Initiative" in titles
    hits = assistant.search("export value of Chinese media", k=3)
    assert len(hits) == 3 and all(h.dense_rank or h.keyword_rank for h in hits)
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_rebuild_without_change_embeds_nothing(built, corpus_copy, fake_embedder):
    assistant, first = built
    before = fake_embedder.embedded
    report = assistant.build(corpus_copy)
    assert report.embedded_chunks == 0 and fake_embedder.embedded == before
    assert report.generation == first.generation  # no new generation was written


def test_adding_one_paper_embeds_only_its_chunks(built, fake_embedder):
    assistant, first = built
    before = fake_embedder.embedded
    report = assistant.add([ARAGOG / "distilbert.pdf"])
    new = next(p for p in assistant.papers() if p.source == "distilbert.pdf")
    assert report.embedded_chunks == new.n_chunks == fake_embedder.embedded - before
    assert report.total_chunks == first.total_chunks + new.n_chunks
    assert (assistant.corpus_dir / "distilbert.pdf").is_file()
    hit = assistant.search("knowledge distillation student teacher", k=1)[0]
    assert hit.paper.paper_id == "distilbert" and hit.chunk.page_start is not None


def test_changed_and_deleted_files(built, corpus_copy, fake_embedder):
    assistant, _ = built
    md = next(corpus_copy.glob("*.md"))
    md.write_text(md.read_text() + "\n\nA new closing sentence about Kazakhstan's film festivals.\n")
    txt = next(corpus_copy.glob("*.txt"))
    txt.unlink()
    report = assistant.build(corpus_copy)
    assert report.count("indexed") == 1 and report.count("removed") == 1
    assert [p.source for p in assistant.papers()] == [md.name]
    assert "Kazakhstan" in assistant.search("Kazakhstan film festivals", k=1)[0].chunk.text


def test_remove_paper(built):
    assistant, _ = built
    paper = assistant.papers()[0]
    assistant.remove(paper.paper_id)
    assert paper.paper_id not in {p.paper_id for p in assistant.papers()}
    assert (assistant.corpus_dir / ".trash" / paper.source).is_file()
    with pytest.raises(PaperNotFoundError, match="papers"):
        assistant.remove("no-such-paper")


def test_manifest_records_what_loading_checks(built):
    assistant, _ = built
    manifest = json.loads((assistant.snapshot.path / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == "fake:hash@1" and manifest["model"]["dimension"] == 64
    assert manifest["settings"]["chunk_tokens"] == "200"
    assert {"faiss-cpu", "bm25s"} <= set(manifest["libraries"])
    assert all(len(p["content_hash"]) == 64 for p in manifest["papers"])
    assert not list(assistant.index_dir.rglob("*.pkl"))


def test_loading_refuses_another_model(built, fake_embedder):
    assistant, _ = built
    fake_embedder.fingerprint = "fake:other@2"
    with pytest.raises(IndexLoadError, match="manifest.json.*configured model"):
        Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)


def test_loading_refuses_dimension_mismatch(built, fake_embedder):
    assistant, _ = built
    fake_embedder.dimension = 32
    with pytest.raises(IndexLoadError, match="dimension"):
        Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)


def test_damaged_file_is_refused_with_its_path(built, fake_embedder):
    assistant, _ = built
    vectors = assistant.index_dir / "segments" / assistant.papers()[0].segment / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vectors.write_bytes(bytes(data))
    # The paper is read, and its files verified, when a query first touches it.
    reloaded = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    with pytest.raises(IndexLoadError, match="vectors.npy.*checksum.*culture-rag build"):
        reloaded.search("cultural industry", papers=[assistant.papers()[0].paper_id])


def test_damaged_generation_falls_back_to_previous(built, fake_embedder):
    assistant, _ = built
    assistant.add([ARAGOG / "distilbert.pdf"])
    live = assistant.snapshot.path
    (live / "manifest.json").write_text("{ truncated")
    reloaded = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert reloaded.snapshot.path != live and len(reloaded.papers()) == 2


def test_a_killed_write_leaves_the_previous_index(built, fake_embedder, monkeypatch):
    assistant, _ = built
    gen_before = assistant.snapshot.generation

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("culture_rag.index.writing._write_manifest", fail)
    from culture_rag import IndexWriteError

    with pytest.raises(IndexWriteError, match="previous index is still served"):
        assistant.add([ARAGOG / "distilbert.pdf"])
    monkeypatch.undo()
    reloaded = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert reloaded.snapshot.generation == gen_before and len(reloaded.papers()) == 2
    assert reloaded.search("cultural industry", k=1)


def test_bad_queries(built):
    assistant, _ = built
    with pytest.raises(QueryError, match="empty"):
        assistant.search("   \x00\x07 ")
    with pytest.raises(QueryError, match="limit"):
        assistant.search("culture " * 20_000)


def test_empty_index_query_is_clear(tmp_path, fake_embedder):
    (tmp_path / "corpus").mkdir()
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(tmp_path / "corpus")
    with pytest.raises(QueryError, match="empty"):
        assistant.search("anything")


def test_missing_index_names_path(tmp_path, fake_embedder):
    with pytest.raises(IndexLoadError, match=str(tmp_path / "nope")):
        Assistant.load(tmp_path / "nope", embedder=fake_embedder)


def test_old_generations_are_collected(built, corpus_copy):
    assistant, _ = built
    for name in ("bert.pdf", "distilbert.pdf", "PAL.pdf"):
        assistant.add([ARAGOG / name])
    assert len(generations(assistant.index_dir)) == assistant.settings.keep_generations
    assert (assistant.index_dir / CURRENT).read_text().strip() == generations(assistant.index_dir)[0]
    live_segments = {p.segment for p in assistant.papers()}
    assert {d.name for d in (assistant.index_dir / "segments").iterdir()} >= live_segments


def test_near_duplicates_are_suppressed(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "Belarus and China co-produce films under the Belt and Road Initiative, a cultural bridge.\n"
    (corpus / "a.txt").write_text(text * 3)
    (corpus / "b.txt").write_text(text * 3)
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus)
    hits = assistant.search("Belarus China films", k=5)
    assert len(hits) == 1


def test_keyword_scores_match_bm25s_also_across_parts():
    """Query-time BM25 must give bm25s's own scores, for one part and for papers appended as parts."""
    import bm25s

    from culture_rag.index.lexical import KeywordIndex, Postings, TermCounts, content_words, tokenize

    texts = [
        "Cultural trade along the Silk Road grew; cultural exports grew faster.",
        "Kazakhstan and Uzbekistan co-produced two films in 2019.",
        "",
        "the of and",  # stop words only
        "Film, film and more film: the film industry of Belarus.",
        "Cultural industry parks in Belarus attract Chinese film crews.",
    ]
    reference = bm25s.BM25()
    reference.index(tokenize(texts), show_progress=False)
    whole = KeywordIndex.build(texts)
    parts = KeywordIndex([(Postings.of_counts(TermCounts.of_texts(texts[a : a + 2])), a) for a in range(0, len(texts), 2)])
    for query in ("cultural film", "Belarus film film", "exports of Kazakhstan", "industry", "nothing matches"):
        expected = reference.get_scores(content_words(query))
        rows = np.flatnonzero(expected > 0)
        for ours in (whole, parts):
            hits = ours.search(query, len(texts))
            assert sorted(hits.rows.tolist()) == rows.tolist(), query
            assert np.allclose(hits.scores, expected[hits.rows], rtol=1e-5), query
    assert rows.size == 0  # the last query matched nothing: no accidental passes above
    assert whole.idf(["film", "unknown"]) == parts.idf(["film", "unknown"])


def test_writes_from_memory_equal_a_fresh_load(built, fake_embedder, monkeypatch):
    """After adds (parts of their own), a merge and a remove, the snapshot assembled in memory
    must be what loading the disk gives."""
    assistant, _ = built
    assistant.add([ARAGOG / "distilbert.pdf"])
    check_same_as_disk(assistant, fake_embedder)
    assistant.add([ARAGOG / "hellaswag.pdf"])
    assert [p.kind for p, _ in assistant.snapshot.parts] == ["merged", "segment", "segment"]
    check_same_as_disk(assistant, fake_embedder)
    snapshot = assistant.snapshot
    merged = min((p for n, p in enumerate(snapshot.papers) if snapshot.placement[n][0] == 0), key=lambda p: p.n_chunks)
    assistant.remove(merged.paper_id)  # leaves unused rows in the merged part
    assert sum(p.n_chunks for p in assistant.papers()) < assistant.snapshot.size
    check_same_as_disk(assistant, fake_embedder)
    monkeypatch.setattr("culture_rag.index.writing.MAX_SEGMENT_PARTS", 1)
    assistant.add([ARAGOG / "bert.pdf"])  # three segment parts now: merged into one part
    assert [p.kind for p, _ in assistant.snapshot.parts] == ["merged", "merged"]
    check_same_as_disk(assistant, fake_embedder)


def test_parts_no_kept_generation_names_are_collected(built, fake_embedder, monkeypatch):
    assistant, _ = built
    parts = assistant.index_dir / "parts"
    (first,) = [p.name for p in parts.iterdir()]
    monkeypatch.setattr("culture_rag.index.writing.MIN_LIVE_FRACTION", 1.0)  # any removal merges its part
    snapshot = assistant.snapshot
    assistant.remove(snapshot.papers[0].paper_id)
    assert {p.id for p, _ in assistant.snapshot.parts} != {first}  # merged anew, without the removed paper
    assert (parts / first).is_dir()  # the previous generation, kept for fallback, still names it
    assistant.add([ARAGOG / "distilbert.pdf"])
    live = {p.id for p, _ in assistant.snapshot.parts if p.kind == "merged"}
    assert {p.name for p in parts.iterdir()} == live  # two generations kept: the first part is gone
    fresh = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert fresh.search("knowledge distillation", k=1)[0].paper.paper_id == "distilbert"


def check_same_as_disk(assistant, fake_embedder):
    from culture_rag.index.dense import part_vectors

    fresh = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    mine, disk = assistant.snapshot, fresh.snapshot
    assert mine.generation == disk.generation and mine.papers == disk.papers and list(mine.chunks) == list(disk.chunks)
    assert mine.rows() == disk.rows() and mine.size == disk.size
    used = [row for _, a, b in mine.rows().values() for row in range(a, b)]
    assert all(np.array_equal(mine.sentence_matrix(row), disk.sentence_matrix(row)) for row in used)
    assert all(np.array_equal(mine.chunk_vector(row), disk.chunk_vector(row)) for row in used)
    assert [(p.kind, p.id, start) for p, start in mine.parts] == [(p.kind, p.id, start) for p, start in disk.parts]
    for (ours, _), (theirs, _) in zip(mine.parts, disk.parts):
        assert np.array_equal(part_vectors(ours.dense), part_vectors(theirs.dense))
    for question in ("knowledge distillation student teacher", "export value of Chinese media", "Belarus film"):
        ours, theirs = mine.keyword.search(question, 10), disk.keyword.search(question, 10)
        assert np.array_equal(ours.rows, theirs.rows) and np.allclose(ours.scores, theirs.scores)
        assert [h.chunk.chunk_id for h in assistant.search(question)] == [h.chunk.chunk_id for h in fresh.search(question)]


def test_a_write_by_another_process_is_seen(built, corpus_copy, fake_embedder):
    """The snapshot in memory is reused for a write only while it is still the live generation."""
    assistant, _ = built
    other = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    other.add([ARAGOG / "distilbert.pdf"])
    assistant.remove(next(p.paper_id for p in assistant.papers() if p.source.endswith(".txt")))
    sources = {p.source for p in assistant.papers()}
    assert "distilbert.pdf" in sources and not any(s.endswith(".txt") for s in sources)


def test_build_over_an_index_of_another_model_embeds_everything_again(built, corpus_copy, fake_embedder):
    assistant, first = built
    other = type(fake_embedder)()
    other.fingerprint = "another-model"
    with pytest.raises(IndexLoadError, match="another-model"):
        Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=other)
    rebuilt = Assistant(assistant.settings, embedder=other)
    report = rebuilt.build(corpus_copy)
    assert report.embedded_chunks == first.total_chunks == report.total_chunks
    assert Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=other).snapshot.size == first.total_chunks


def test_loading_many_papers_holds_no_file_open(tmp_path, fake_embedder):
    """A 1M-chunk index is 13k segments: loading must not keep a file (or a memory map, which
    holds one) open per segment. Here 60 papers are loaded with room for only 20 more files."""
    import os
    import resource

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(60):
        (corpus / f"paper-{i:02d}.txt").write_text(f"Paper {i} on the puppet theatres of Grodno and film festival {i}.\n")
    Assistant(make_settings(tmp_path), embedder=fake_embedder).build(corpus)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 20, hard))
    try:
        loaded = Assistant.load(tmp_path / "index", settings=make_settings(tmp_path), embedder=fake_embedder)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(loaded.papers()) == 60 and loaded.search("Grodno film festival 7", k=1)


def test_a_new_index_format_never_reuses_segments_of_the_old_one(built, corpus_copy, monkeypatch):
    """Segments are reused by name; a format change must change the names, or a build by the new
    version would pick up files laid out for the old one."""
    from culture_rag.index import layout as index

    assistant, _ = built
    old = {p.segment for p in assistant.papers()}
    monkeypatch.setattr(index, "FORMAT", index.FORMAT + 1)
    monkeypatch.setattr(index, "READABLE_FORMATS", (index.FORMAT,))
    monkeypatch.setattr(index, "SEGMENT_FORMAT", index.SEGMENT_FORMAT + 1)
    report = assistant.build(corpus_copy)  # the old generation is another version's: all re-embedded
    assert report.embedded_chunks == report.total_chunks > 0
    assert old.isdisjoint(p.segment for p in assistant.papers())


def test_a_format_7_index_is_read_and_upgraded_by_build_without_embedding(built, corpus_copy, fake_embedder):
    """Format 7 kept every paper's segment and no parts: it is read as one segment part per
    paper, answers as before, and the next build writes format 8 from the same segments."""
    from culture_rag.index import MANIFEST_DIGEST, manifest_digest
    from culture_rag.index.layout import FORMAT

    assistant, _ = built
    question = "export value of Chinese media"
    before = [h.chunk.chunk_id for h in assistant.search(question)]
    manifest = json.loads((assistant.snapshot.path / "manifest.json").read_text())
    old = {k: v for k, v in manifest.items() if k not in ("placement", "parts", "part_files")}
    old.update(format=7, generation=2, dense_type="flat")
    old[MANIFEST_DIGEST] = manifest_digest(old)
    (assistant.index_dir / "gen-000002").mkdir()
    (assistant.index_dir / "gen-000002" / "manifest.json").write_text(json.dumps(old))
    (assistant.index_dir / "CURRENT").write_text("gen-000002\n")
    legacy = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert legacy.snapshot.outdated and [p.kind for p, _ in legacy.snapshot.parts] == ["segment", "segment"]
    assert [h.chunk.chunk_id for h in legacy.search(question)] == before
    report = legacy.build(corpus_copy)
    assert report.embedded_chunks == 0 and report.generation == 3
    upgraded = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert upgraded.snapshot.manifest["format"] == FORMAT and not upgraded.snapshot.outdated
    assert [h.chunk.chunk_id for h in upgraded.search(question)] == before


def test_a_warm_parser_is_kept_between_adds_and_stopped_by_close(built):
    import multiprocessing

    assistant, _ = built
    assistant.warm_up(writes=True)
    children = multiprocessing.active_children()
    assert len(children) == 1
    assistant.add([ARAGOG / "distilbert.pdf"])
    assert multiprocessing.active_children() == children  # the same parser parsed it
    assert "distilbert.pdf" in {p.source for p in assistant.papers()}
    assistant.close()
    assert multiprocessing.active_children() == []


def test_chunks_keep_roles_heading_paths_and_affiliation_through_the_index(built, fake_embedder):
    assistant, _ = built
    loaded = Assistant.load(assistant.index_dir, assistant.settings, fake_embedder)
    chunks = loaded.snapshot.chunks
    assert [c.role for c in chunks] == [c.role for c in assistant.snapshot.chunks]
    quoted = [c for c in chunks if "By DAVID BREWER" in c.text]
    assert quoted and quoted[0].role == "quoted" and {s.role for s in quoted[0].sentences} == {"quoted"}
    sub = next(c for c in chunks if c.text.startswith("3.2 Give Full Play"))
    assert sub.heading_path[-1] == sub.section == "3.2 Give Full Play to Regional Advantages"
    assert sub.heading_path[0].startswith("3. The Development Path")
    assert any(c.role == "reference" for c in chunks) and any(c.role == "front" for c in chunks)
    assert {p.affiliation for p in loaded.papers()} == {
        "Bozhou Vocational and Technical College", "School of Business, Belarusian State University"}


def test_chunk_records_refuse_an_unknown_role(tmp_path):
    from culture_rag.index.reading import read_chunks
    from culture_rag.index.writing import _chunk_record
    from culture_rag.types import Chunk, Span

    chunk = Chunk("c1", "p", "Some text.", 10, 20, 3, (Span(10, 20, 1, "caption"),), role="caption", heading_path=("2 Data",))
    path = tmp_path / "chunks.jsonl"
    path.write_text(json.dumps(_chunk_record(chunk)) + "\n")
    assert read_chunks(path) == [chunk]
    for bad in ({"role": "novel"}, {"sentence_roles": "z"}, {"sentence_roles": "cc"}, {"sentence_roles": ["c"]},
                {"heading_path": "2 Data"}, {"heading_path": [3]}):
        path.write_text(json.dumps(_chunk_record(chunk) | bad) + "\n")
        with pytest.raises(IndexLoadError, match="chunks.jsonl"):
            read_chunks(path)
