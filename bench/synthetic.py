"""Synthetic indexes of any size, written through culture_rag.index.write_generation:
the real papers' chunks (texts, sentences, sentence vectors) replicated as new papers, with
fresh dense vectors instead of embedding a million texts.

Vectors: "mixed" (default) draws each as a normalized blend of two real sentence vectors plus
noise, so neighbourhoods look like real embeddings and IVF recall means something; "random"
draws uniform unit vectors, where every point is about as far as every other (a worst case
for any approximate index, and meaningless for recall)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

BLOCK = 100_000  # vectors drawn per step, to bound the generator's memory


def stamp_of(assistant, corpus_dir: Path):
    """What the Library records of a generation, so Assistant.load accepts the synthetic index."""
    from culture_rag.index import ModelInfo, Stamp

    settings = {k: str(v) for k, v in assistant.settings.index_signature().items()}
    return Stamp(ModelInfo.of(assistant.embedder), settings, str(corpus_dir))  # where add puts papers


def real_segments(assistant) -> list:
    """The real papers' segments, whole, as the index holds them."""
    from culture_rag.index import Segment

    snapshot = assistant.snapshot
    out = []
    for number, paper in enumerate(snapshot.papers):
        data = snapshot.paper_data(number)
        terms = snapshot.reader.terms(number)
        out.append(Segment(paper, data.chunks, data.vectors, data.sentences, terms, assistant.library.lines(paper)))
    return out


def vectors(n: int, seeds: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, seeds.shape[1]), np.float32)
    for lo in range(0, n, BLOCK):
        m = min(BLOCK, n - lo)
        if kind == "random":
            block = rng.standard_normal((m, seeds.shape[1]), dtype=np.float32)
        else:
            a, b = seeds[rng.integers(0, len(seeds), m)], seeds[rng.integers(0, len(seeds), m)]
            weight = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
            noise = rng.standard_normal((m, seeds.shape[1]), dtype=np.float32) * 0.02  # norm about 0.4
            block = weight * a + (1 - weight) * b + noise
        out[lo : lo + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def replicate(segments: list, n: int, kind: str, seed: int = 0) -> tuple[np.ndarray, list]:
    """Replicas of the real papers, as new papers, until there are `n` chunks; and their vectors."""
    rng = np.random.default_rng(seed)
    seeds = np.concatenate([s.sentence_vectors for s in segments]).astype(np.float32)
    seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
    dense = vectors(n, seeds, kind, rng)
    return dense, _papers(segments, n, kind, dense)


def _papers(segments: list, n: int, kind: str, dense: np.ndarray) -> list:
    from culture_rag.index import segment_id

    out, made, r = [], 0, 0
    while made < n:
        for seg in segments:
            take = min(len(seg.chunks), n - made)
            if take == 0:
                break
            paper_id = f"{seg.paper.paper_id}-r{r}"
            info = replace(
                seg.paper,
                paper_id=paper_id,
                source=f"r{r}-{seg.paper.source}",
                n_chunks=take,
                segment=segment_id(f"{seg.paper.content_hash}-r{r}", {"synthetic": kind}),
            )
            chunks = tuple(replace(c, chunk_id=f"{c.chunk_id}-r{r}", paper_id=paper_id) for c in seg.chunks[:take])
            n_sentences = sum(len(c.sentences) for c in chunks)
            out.append(replace(seg, paper=info, chunks=chunks, vectors=dense[made : made + take], sentence_vectors=seg.sentence_vectors[:n_sentences],
                               terms=seg.terms.rows(0, take)))
            made += take
        r += 1
    return out


def ensure(index_dir: Path, n: int, kind: str, assistant) -> dict:
    """Write the synthetic index unless an identical one is there; returns its stamp, with the
    dense recall of its parts against exact search on real questions."""
    from culture_rag.index import FORMAT, write_generation

    corpus_dir = index_dir.with_name(index_dir.name + "-corpus")
    stamp = {"chunks": n, "vectors": kind, "format": FORMAT, "model": assistant.embedder.fingerprint, "parts": 2}
    stamp_file = index_dir / "bench-stamp.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
        return json.loads(stamp_file.read_text())
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    start = time.perf_counter()
    dense, segments = replicate(real_segments(assistant), n, kind)
    snapshot = write_generation(index_dir, segments, stamp_of(assistant, corpus_dir), keep=1)
    record = {"stamp": stamp, "write_s": round(time.perf_counter() - start, 1), "papers": len(segments)}
    record["recall"] = dense_recall(snapshot, dense, assistant)
    stamp_file.write_text(json.dumps(record))
    return record


def dense_recall(snapshot, dense: np.ndarray, assistant, k: int = 50) -> dict[str, float]:
    """Overlap of the index's dense top-10 and top-k with exact inner-product search over the
    same vectors, on the dev questions."""
    import common

    questions = [q["question"] for name in ("dev_seed", "dev_aragog") for q in common.eval_questions(name)]
    queries = assistant.embedder.embed_texts(questions)
    truth = [np.argsort(-(dense @ q), kind="stable")[:k] for q in queries]
    got = [snapshot.dense_search(q, k)[0] for q in queries]
    return {f"@{n}": round(float(np.mean([len(set(g[:n]) & set(t[:n].tolist())) / n for g, t in zip(got, truth)])), 3) for n in (10, k)}
