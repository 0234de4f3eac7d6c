"""Indexing throughput: chunks/s of a real Assistant.build over corpus/ plus the aragog PDFs,
against the backend's raw encode of the same chunk texts in the same run (interleaved rounds),
with the build's time split by stage (parse, chunk, embed, write)."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import common
import numpy as np
from common import p50, row

RATIO_TARGET = 0.9
CHUNKS_PER_S_TARGET = 60  # of about 160 word pieces (issue 11; it was 28)

def stages(assistant) -> list[tuple[object, str]]:
    """The build's stages, as (owner, attribute) for common.stage_timers."""
    from culture_rag.ingest import pipeline as module  # the per-paper step: parse_file and chunk_paper as it calls them
    from culture_rag.index import store

    return [(module, "parse_file"), (module, "chunk_paper"), (assistant.embedder, "embed_passages"), (store, "write_generation")]


def raw_encoder(embedder):
    """The backend's bare encode: sentence-transformers' encode for torch, the int8 session's
    runs (tokenizing included, one text per run as the engine does) for onnx-int8."""
    if embedder.passage_backend == "torch":
        return partial(embedder._model.encode, batch_size=embedder.batch_size)
    return embedder._onnx_passages.encode


def late_chunking_cost(embedder, chunks) -> float:
    """embed_passages' rate over raw encode's on the same texts, alternated so that drifting
    load hits both: what the sentence vectors cost apart from parsing and chunking."""
    from culture_rag.ingest.chunking import sentence_spans_in_embed_text

    texts = [c.embed_text for c in chunks]
    spans = [sentence_spans_in_embed_text(c) for c in chunks]
    late, raw = [], []
    for _ in range(2):
        late.append(common.timed(partial(embedder.embed_passages, texts, spans)))
        raw.append(common.timed(partial(raw_encoder(embedder), texts)))
    return sum(raw) / sum(late)


def _target(corpus_only: bool, ratio: float) -> tuple[str, bool | None]:
    if corpus_only:
        return f"{RATIO_TARGET} applies without --corpus-only", None
    return f">= {RATIO_TARGET}", ratio >= RATIO_TARGET


def main(argv: list[str] | None = None) -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved raw/build rounds (medians)")
    parser.add_argument("--backend", default="onnx-int8", choices=["onnx-int8", "torch"], help="passage_backend")
    parser.add_argument("--corpus-only", action="store_true", help="skip the PDFs (a quick check)")
    parser.add_argument("--ab-chunks", type=int, default=128, help="chunks for the late-chunking A/B")
    args = parser.parse_args(argv)
    common.quiet()
    common.header(f"indexing: Assistant.build vs raw encode ({args.backend})")
    from culture_rag import Assistant
    from culture_rag.embed.embedder import SentenceTransformerEmbedder

    rows, build_rates, raw_rates, ratios, totals, build_seconds = [], [], [], [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = common.copy_corpus(Path(tmp), pdfs=not args.corpus_only)
        settings = common.settings(Path(tmp) / "unused").model_copy(update={"passage_backend": args.backend})
        embedder = SentenceTransformerEmbedder(settings)
        # Both sides' tokenizers too: the build sizes chunks with one of its own (embedder.count).
        load_s = common.timed(lambda: (raw_encoder(embedder)(["warm up"]), embedder.count(["warm up"])))
        texts: list[str] = []

        def raw() -> float:
            seconds = common.timed(lambda: raw_encoder(embedder)(texts))
            return len(texts) / seconds

        for r in range(args.rounds):
            before = raw() if texts else None  # the chunk texts are known after the first build
            assistant = Assistant(common.settings(Path(tmp) / f"index-{r}", corpus).model_copy(update={"passage_backend": args.backend}), embedder)
            with common.stage_timers(stages(assistant), totals):
                seconds = common.timed(partial(assistant.build, corpus))
            texts = [c.embed_text for c in assistant.snapshot.chunks]
            build_rates.append(len(texts) / seconds)
            build_seconds.append(seconds)
            # The machine is shared: the raw rate on both sides of the build, for its ratio.
            around = [x for x in (before, raw()) if x is not None]
            raw_rates.extend(around)
            ratios.append(build_rates[-1] / float(np.mean(around)))
            print(f"round {r + 1}: build {build_rates[-1]:.1f} chunks/s, raw {np.mean(around):.1f} chunks/s", flush=True)
        pieces = float(np.mean(embedder.count(texts))) + 2  # [CLS] and [SEP]
        late_vs_raw = late_chunking_cost(embedder, assistant.snapshot.chunks[: args.ab_chunks])
    ratio = p50(ratios)
    build_total = sum(build_seconds)
    totals["other (scan, table rows, hashing, reload)"] = build_total - sum(totals.values())
    embed_rate = len(texts) * args.rounds / totals["SentenceTransformerEmbedder.embed_passages"]
    rows += [
        row("indexing", "model load (not in either rate)", round(load_s, 1), "s"),
        row("indexing", f"chunks ({pieces:.0f} word pieces each, mean)", len(texts), ""),
        row("indexing", "raw encode", round(p50(raw_rates), 1), "chunks/s"),
        row("indexing", "Assistant.build", round(p50(build_rates), 1), "chunks/s"),
        row("indexing", "  its embed_passages (late chunking) alone", round(embed_rate, 1), "chunks/s"),
        row("indexing", "  embed_passages / raw, same texts, interleaved", round(late_vs_raw, 3), ""),
        # Two small papers are a smoke test: the write's fixed cost outweighs 60 chunks of embedding.
        row("indexing", "build / raw (median of rounds)", round(ratio, 3), "", *_target(args.corpus_only, ratio)),
        row(
            "indexing",
            "build at 160 word pieces (scaled)",
            round(p50(build_rates) * pieces / 160, 1),
            "chunks/s",
            f">= {CHUNKS_PER_S_TARGET}",
            p50(build_rates) * pieces / 160 >= CHUNKS_PER_S_TARGET,
        ),
    ]
    for name, total in totals.items():
        rows.append(row("indexing", f"  stage {name}", round(total / args.rounds, 2), "s", f"{total / build_total:.0%} of build"))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
