"""Source view: what a cited page costs to show (render + PNG, the whole source_view call, the
boxes alone), what the line anchors cost at indexing (parse with and without them, interleaved),
and their size on disk, on the five arXiv PDFs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
from common import ARAGOG, ms, p50, row


def parse_cost(rounds: int = 3) -> tuple[float, float, int]:
    """Median parse time of all five PDFs with line anchors and without, alternated."""
    from culture_rag.ingest import papers

    pdfs = sorted(ARAGOG.glob("*.pdf"))
    original = papers._line_anchors
    with_anchors, without = [], []
    for _ in range(rounds):
        with_anchors.append(common.timed(lambda: [papers.read_paper(p) for p in pdfs]))
        papers._line_anchors = lambda *a: ()
        try:
            without.append(common.timed(lambda: [papers.read_paper(p) for p in pdfs]))
        finally:
            papers._line_anchors = original
    n_pages = sum(papers.read_paper(p).n_pages for p in pdfs)
    return p50(with_anchors), p50(without), n_pages


def main() -> None:
    args = common.args_parser(__doc__).parse_args()
    common.quiet()
    common.header("source view")
    from culture_rag import Assistant, Settings

    rows = []
    with_anchors, without, n_pages = parse_cost()
    rows.append(row("sourceview", "parse 5 PDFs, with anchors", ms(with_anchors), "ms"))
    rows.append(row("sourceview", "parse 5 PDFs, without", ms(without), "ms"))
    rows.append(row("sourceview", "anchors per page", ms((with_anchors - without) / n_pages), "ms"))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for pdf in sorted(ARAGOG.glob("*.pdf")):
            (corpus / pdf.name).write_bytes(pdf.read_bytes())
        assistant = Assistant(Settings(index_dir=Path(tmp) / "index", corpus_dir=corpus))
        assistant.build(corpus)
        n_chunks = assistant.snapshot.size
        lines_bytes = sum(p.stat().st_size for p in (Path(tmp) / "index" / "segments").glob("*/lines.npy"))
        rows.append(row("sourceview", "lines.npy per chunk", round(lines_bytes / n_chunks, 1), "bytes"))
        # one sentence from every fourth chunk: pages all over the five papers
        cases = [(c, c.sentences[len(c.sentences) // 2]) for c in assistant.snapshot.chunks[::4] if c.sentences]
        for label, kwargs in (("boxes only", {"image": False}), ("scale 1.5", {"scale": 1.5}), ("scale 3", {"scale": 3.0})):
            times = common.latencies(lambda cs: assistant.source_view(cs[0], start=cs[1].start, end=cs[1].end, **kwargs), cases)
            rows.append(row("sourceview", f"source_view p50, {label}", ms(p50(times)), "ms"))
            rows.append(row("sourceview", f"source_view p95, {label}", ms(common.p95(times)), "ms"))
        sizes = [len(assistant.source_view(c, start=s.start, end=s.end).png) for c, s in cases[:20]]
        rows.append(row("sourceview", "PNG size p50, scale 1.5", round(p50(sizes) / 1024, 1), "KiB"))
        rows.append(row("sourceview", "sentences viewed", len(cases), ""))
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
