"""The packaged model: offline, hash-checked, and the ONNX query path equal to torch."""

from __future__ import annotations

import numpy as np
import pytest

from culture_rag import ModelError, Settings
from culture_rag.embed.embedder import SentenceTransformerEmbedder
from culture_rag.embed.onnx_export import PASSAGE_GRAPH

pytestmark = pytest.mark.slow


def test_onnx_query_vectors_equal_torch(tmp_path):
    onnx = SentenceTransformerEmbedder(Settings(cache_dir=tmp_path))
    torch = SentenceTransformerEmbedder(Settings(cache_dir=tmp_path, query_backend="torch"))
    for text in ("What strengths does Belarus have?", "export value of Chinese media in 2020", "word " * 400):
        a, b = onnx.embed_query(text), torch.embed_query(text)
        assert a.shape == (384,) and abs(float(np.linalg.norm(a)) - 1) < 1e-4
        assert float(a @ b) > 0.9999
    assert onnx._onnx_query is not None  # the ONNX path really ran
    assert list((tmp_path / "onnx").glob("*/query-fp32.onnx"))  # exported once into the cache


def test_wrong_weights_hash_is_refused():
    with pytest.raises(ModelError, match="sha256"):
        SentenceTransformerEmbedder(Settings(embedding_sha256="0" * 64))


def test_chunk_and_sentence_vectors_come_from_one_pass():
    embedder = SentenceTransformerEmbedder(Settings(query_backend="torch", passage_backend="torch"))
    text = "Belarus has a strong heritage in crafts. China exports films to Africa."
    vectors = embedder.embed_passages([text], [[(0, 40), (41, len(text))]])
    assert vectors.chunks.shape == (1, 384) and vectors.sentences.shape == (2, 384)
    whole = embedder.embed_query(text)
    assert float(vectors.chunks[0] @ whole) > 0.9999
    crafts = embedder.embed_query("crafts heritage")
    assert float(vectors.sentences[0] @ crafts) > float(vectors.sentences[1] @ crafts)


# --- int8 ONNX passages ---------------------------------------------------------------------

INT8_SCRIPT = """
import sys
from pathlib import Path
from culture_rag import Settings
from culture_rag.embed.embedder import SentenceTransformerEmbedder
embedder = SentenceTransformerEmbedder(Settings(cache_dir=Path(sys.argv[1]), passage_backend="onnx-int8"))
text = "Belarus has a strong heritage in crafts. China exports films to Africa."
vectors = embedder.embed_passages([text], [[(0, 40), (41, len(text))]])
assert vectors.sentences.shape == (2, 384) and embedder.count([text]) == [14] and embedder.windows(text, 5)
print(sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules))
"""


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    """One cache with the int8 passage graph exported, shared by the tests below (~10 s)."""
    cache = tmp_path_factory.mktemp("cache")
    SentenceTransformerEmbedder(Settings(cache_dir=cache, passage_backend="onnx-int8")).embed_texts(["warm up"])
    return cache


def corpus_chunks(embedder) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """The real chunks of corpus/ (as indexing cuts them): embed texts and sentence spans."""
    from conftest import CORPUS

    from culture_rag.ingest.chunking import chunk_paper, sentence_spans_in_embed_text
    from culture_rag.ingest.parsed import Paper, Region

    texts, spans = [], []
    for path in sorted(CORPUS.glob("*.[mt][dx]*")):
        text = path.read_text()
        paper = Paper(path.stem, path.name, path.stem, (), path.suffix[1:], text, (Region(0, len(text), page=1),), "hash")
        for chunk in chunk_paper(paper, embedder, 200, 40, embedder.max_tokens):
            texts.append(chunk.embed_text)
            spans.append(sentence_spans_in_embed_text(chunk))
    return texts, spans


@pytest.fixture(scope="module")
def torch_pair(tmp_path_factory, real_corpus_assistant, real_aragog_assistant):
    """For each dev set: its index with int8 passages (the default, shared with the other tests)
    and the same papers with torch passages. Both embed questions with the same fp32 graph, so
    every difference comes from the passage vectors."""
    import shutil

    from culture_rag import Assistant

    pairs = {}
    for name, int8 in (("dev_seed", real_corpus_assistant), ("dev_aragog", real_aragog_assistant)):
        tmp = tmp_path_factory.mktemp(f"torch-{name}")
        shutil.copytree(int8.settings.corpus_dir, tmp / "corpus")
        torch = Assistant(int8.settings.model_copy(update={"index_dir": tmp / "index", "corpus_dir": tmp / "corpus", "passage_backend": "torch"}))
        torch.build()
        pairs[name] = (int8, torch)
    return pairs


def retrieval(assistant, name: str) -> tuple[dict[str, float], list[set[str]]]:
    """FORMAT.md's recall@5, mrr and source_hit@5 from search alone, and each question's top 10."""
    from conftest import EVAL

    from culture_rag.evaluate.scoring import contains_evidence, read_questions

    questions = read_questions(EVAL / f"{name}.jsonl")
    hits = [assistant.search(q.question, k=10) for q in questions]
    ranks = [
        next((r for r, h in enumerate(found, 1) if contains_evidence(h.chunk.text, list(q.evidence))), None)
        for q, found in zip(questions, hits)
        if q.answerable and q.evidence
    ]
    sourced = [bool({h.paper.source for h in found[:5]} & set(q.sources)) for q, found in zip(questions, hits) if q.sources]
    scores = {"source_hit@5": float(np.mean(sourced)) if sourced else None}
    if ranks:
        scores |= {"recall@5": float(np.mean([r is not None and r <= 5 for r in ranks])), "mrr": float(np.mean([1 / r if r else 0 for r in ranks]))}
    else:
        scores |= {"recall@5": None, "mrr": None}
    return scores, [{h.chunk.chunk_id for h in found} for found in hits]


@pytest.mark.parametrize("name", ["dev_seed", "dev_aragog"])
def test_int8_retrieval_matches_torch(torch_pair, name):
    """Bounds from bench/quantizers.py (bench/README.md): the int8 graph kept recall@5 and
    source_hit@5 equal to torch's, mrr above it, and the top 10 overlapping by 0.94-0.97. One
    question more missed fails here, and so does the per-tensor graph (overlap 0.83, recall 0.92)."""
    int8, torch = torch_pair[name]
    (mine, my_hits), (ref, ref_hits) = retrieval(int8, name), retrieval(torch, name)
    for metric in ("recall@5", "source_hit@5"):
        if ref[metric] is not None:
            assert mine[metric] >= ref[metric] - 1e-9, (metric, mine[metric], ref[metric])
    if ref["mrr"] is not None:
        assert mine["mrr"] >= ref["mrr"] - 0.05
    overlap = float(np.mean([len(a & b) / max(1, len(b)) for a, b in zip(my_hits, ref_hits)]))
    assert overlap >= OVERLAP_MIN, overlap


OVERLAP_MIN = 0.9


def test_int8_passage_vectors_are_close_to_torch(torch_pair):
    """Every chunk and sentence of both dev sets' indexes against torch's. A sentence is the mean
    of few word pieces, so its quantization noise averages out less than a chunk's: the bounds
    are on the low tail, not on one worst sentence (bench/README.md has the measured tails).
    Front matter and references make chunks of their own, some of a few words: the worst
    chunk (0.973 here) is such a short one, so the chunk floor is 0.97 and the median stays 0.99."""
    chunks, sentences = [], []
    for int8, torch in torch_pair.values():
        a, b = int8.snapshot, torch.snapshot
        rows = {c.chunk_id: i for i, c in enumerate(b.chunks)}
        assert len(a.chunks) == len(b.chunks) > 40 and set(rows) == {c.chunk_id for c in a.chunks}  # same pieces, same chunks
        for i, chunk in enumerate(a.chunks):
            j = rows[chunk.chunk_id]
            chunks.append(float(a.chunk_vector(i) @ b.chunk_vector(j)))
            sentences.extend((a.sentence_matrix(i) * b.sentence_matrix(j)).sum(1).tolist())
    chunks, sentences = np.array(chunks), np.array(sentences)
    assert chunks.min() >= 0.97 and np.median(chunks) >= 0.99
    assert np.percentile(sentences, 1) >= 0.97 and np.median(sentences) >= 0.985 and sentences.min() >= 0.92


def test_int8_free_texts_come_from_the_passage_graph(int8_cache):
    """Table rows and citation checks are compared with passage vectors, so they use the same graph."""
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    texts, spans = corpus_chunks(int8)
    assert np.array_equal(int8.embed_texts(texts[:5]), int8.embed_passages(texts[:5], spans[:5]).chunks)
    assert np.allclose(np.linalg.norm(int8.embed_passages(texts[:5], spans[:5]).sentences, axis=1), 1, atol=1e-4)


def test_int8_vectors_do_not_depend_on_the_other_texts(int8_cache):
    """int8 activation scales are set per run, so texts run one at a time: a paper added later
    gets exactly the vectors a full rebuild would give it."""
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    short = "Belarus has a strong heritage in crafts."
    alone = int8.embed_texts([short])[0]
    among = int8.embed_texts(["China exports films and television series to Africa. " * 20, short])[1]
    assert np.array_equal(alone, among)


def test_passage_backend_changes_the_fingerprint(int8_cache):
    torch = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="torch"))
    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    assert torch.fingerprint != int8.fingerprint and int8.fingerprint.startswith(torch.fingerprint)


def test_int8_export_is_cached_and_loading_needs_no_torch(int8_cache, monkeypatch):
    import subprocess
    import sys

    graph = next((int8_cache / "onnx").glob(f"*/{PASSAGE_GRAPH}"))
    before = graph.stat()
    assert not [p.name for p in graph.parent.iterdir() if p.name.startswith(("raw-", "tmp-"))]  # no leftovers

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr("culture_rag.embed.onnx_export._trace", no_export)
    again = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    assert again.embed_texts(["Belarus crafts"]).shape == (1, 384)
    after = graph.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    run = subprocess.run([sys.executable, "-c", INT8_SCRIPT, str(int8_cache)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_int8_index_is_refused_with_torch_settings(int8_cache, tmp_path, corpus_copy):
    from conftest import make_settings

    from culture_rag import Assistant, IndexLoadError

    int8 = make_settings(tmp_path, cache_dir=int8_cache, passage_backend="onnx-int8")
    Assistant(int8).build(corpus_copy)
    assert Assistant.load(settings=int8).search("cultural trade between China and Belarus", k=3)
    with pytest.raises(IndexLoadError, match=r"manifest\.json.*onnx-int8.*configured model"):
        Assistant.load(settings=make_settings(tmp_path, cache_dir=int8_cache, passage_backend="torch"))


# --- int8 kernels: what an index records, and adding papers from another CPU --------------


def test_int8_kernel_family_from_cpu_flags():
    from culture_rag.embed.quantize import int8_kernels

    assert int8_kernels(frozenset({"sse4_1", "avx2", "fma"})) == "avx2"  # the CPU of issue 11
    assert int8_kernels(frozenset({"avx2", "avx512bw", "avx512_vnni"})) == "avx512-vnni"  # Linux's spelling
    assert int8_kernels(frozenset({"avx2", "avx512bw", "avx512vnni"})) == "avx512-vnni"  # numpy's
    assert int8_kernels(frozenset({"avx2", "avx512bw"})) == "avx512bw"  # saturating pairs, like AVX2
    assert int8_kernels(frozenset({"avx2", "avx_vnni"})) == "avx-vnni"
    assert int8_kernels(frozenset()).startswith("generic-")


def test_index_records_int8_kernels_and_accepts_papers_from_another_family(int8_cache, tmp_path, corpus_copy, monkeypatch):
    """The policy: compatible vectors. 7-bit weights sum exactly on every kernel family, so a
    machine of another family adds papers to the index and its family joins the record."""
    import json
    import shutil

    from conftest import make_settings

    from culture_rag import Assistant
    from culture_rag.embed.quantize import int8_kernels

    settings = make_settings(tmp_path, cache_dir=int8_cache, passage_backend="onnx-int8")
    added = sorted(corpus_copy.glob("*.[mt][dx]*"))[-1]
    shutil.move(added, tmp_path / added.name)
    Assistant(settings).build(corpus_copy)

    def manifest() -> dict:
        current = (settings.index_dir / "CURRENT").read_text().strip()
        return json.loads((settings.index_dir / current / "manifest.json").read_text())["model"]

    assert manifest()["int8_kernels"] == [int8_kernels()]
    other = "avx2" if int8_kernels() != "avx2" else "avx512-vnni"
    monkeypatch.setattr("culture_rag.index.writing.int8_kernels", lambda: other)
    shutil.move(tmp_path / added.name, corpus_copy / added.name)
    assistant = Assistant.load(settings=settings)
    assistant.build(corpus_copy)
    assert manifest()["int8_kernels"] == sorted({int8_kernels(), other})
    assert {p.source for p in Assistant.load(settings=settings).papers()} >= {added.name}
    # a full rebuild re-embeds everything on this machine: only its family is left
    shutil.rmtree(settings.index_dir)
    Assistant(settings).build(corpus_copy)
    assert manifest()["int8_kernels"] == [other]


def test_index_of_the_old_8bit_int8_vectors_is_refused(int8_cache, tmp_path, corpus_copy):
    from conftest import make_settings

    from culture_rag import Assistant, IndexLoadError

    settings = make_settings(tmp_path, cache_dir=int8_cache, passage_backend="onnx-int8")
    old = SentenceTransformerEmbedder(settings)
    old.fingerprint = old.fingerprint.rsplit(":", 1)[0]  # what the 8-bit graph's indexes recorded
    Assistant(settings, embedder=old).build(corpus_copy)
    with pytest.raises(IndexLoadError, match=r"8-bit weights.*VNNI.*rebuild"):
        Assistant.load(settings=settings)


QEMU_SCRIPT = """
import json
import sys
import numpy as np
from pathlib import Path
from culture_rag import Settings
from culture_rag.embed.embedder import SentenceTransformerEmbedder
embedder = SentenceTransformerEmbedder(Settings(cache_dir=Path(sys.argv[1]), passage_backend="onnx-int8"))
texts = json.loads(Path(sys.argv[2]).read_text())
spans = [[(0, len(t) // 2), (len(t) // 2, len(t))] for t in texts]
v = embedder.embed_passages(texts, spans)
np.savez(sys.argv[3], chunks=v.chunks, sentences=v.sentences)
"""


@pytest.mark.skipif(not __import__("shutil").which("qemu-x86_64"), reason="needs qemu-user (Debian: qemu-user) to emulate a CPU without AVX-512/VNNI")
def test_int8_vectors_are_the_same_without_vnni(int8_cache, tmp_path):
    """The same texts embedded here and under QEMU emulating a Haswell (AVX2 + FMA, no AVX-512,
    no VNNI), where ONNX Runtime takes its AVX2 int8 kernels: the compatible-vectors policy holds
    only if the two agree far more closely than either agrees with torch (0.98-0.99). Measured on
    these texts (bench/README.md): 7-bit weights 0.9977 (chunks) and 0.9975 (sentences) at
    worst, not bit-identical (fp32 operators differ too); the old 8-bit graph 0.989 and 0.988."""
    import json
    import subprocess
    import sys

    int8 = SentenceTransformerEmbedder(Settings(cache_dir=int8_cache, passage_backend="onnx-int8"))
    texts, _ = corpus_chunks(int8)
    texts = texts[:6]
    (tmp_path / "texts.txt").write_text(json.dumps(texts))
    spans = [[(0, len(t) // 2), (len(t) // 2, len(t))] for t in texts]
    here = int8.embed_passages(texts, spans)
    script = [sys.executable, "-c", QEMU_SCRIPT, str(int8_cache), str(tmp_path / "texts.txt"), str(tmp_path / "haswell.npz")]
    run = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", *script], capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    there = np.load(tmp_path / "haswell.npz")
    assert float((here.chunks * there["chunks"]).sum(1).min()) >= 0.995
    assert float((here.sentences * there["sentences"]).sum(1).min()) >= 0.995
