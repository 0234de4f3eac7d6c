"""Local generation with llama.cpp (xllamacpp): prompt and generation tokens/s and time to first
token for each packaged Qwen2.5-Coder model at 1 and 2 threads, on a prompt of five evidence
sentences, the configurations interleaved run by run so that the machine's noise hits them alike;
and question translation (latency, and whether the key English words come out).

    python bench/llm.py --runs 5
    python bench/llm.py --translation-only
"""

from __future__ import annotations

import json
import os
import re
import time

import common
from common import p50, row

from culture_rag import Settings
from culture_rag.answer.generation import LocalGenerator
from culture_rag.answer.prompts import Evidence, build_messages
from culture_rag.answer.translation import QuestionTranslator, detect_language
from culture_rag.settings import PACKAGED_LLM, PACKAGED_LLM_SMALL

QUESTION = "What strategies do the papers propose for China's cultural industry to go international?"

# Questions of this bench's own (not dev questions), with words a right translation contains.
OWN_QUESTIONS = [
    ("BERT 的预训练任务有哪些？", ["bert", "pre"]),
    ("HellaSwag 数据集是如何构建的？", ["hellaswag", "dataset"]),
    ("毛的论文对中国和白俄罗斯的文化产业有什么结论？", ["china", "belarus", "conclu"]),
    ("白俄罗斯文化产业的优势是什么？", ["belarus", "cultural industry"]),
    ("Какие выводы делает Мао о культурной индустрии Китая и Беларуси?", ["mao", "china", "belarus"]),
    ("Что такое CodeNet и сколько в нём примеров кода?", ["codenet", "code"]),
    ("Как PAL использует программы для решения задач?", ["pal", "program"]),
    ("Кто авторы статьи о DistilBERT?", ["author", "distilbert"]),
    ("Что предлагают Шан и Лю для развития культурной индустрии?", ["shang", "liu"]),
]


def evidence_sentences(n: int = 5) -> list[str]:
    """Body sentences of 15-40 words from the shipped papers, as the answerer would select them."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(common.CORPUS.glob("*.md")))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text))]
    body = [s for s in sentences if 15 <= len(s.split()) <= 40 and not re.search(r"[#|*\[\]]", s)]
    step = max(1, len(body) // (4 * n))
    return body[step : step * 4 * n : step][: 4 * n]


def generation_rows(runs: int, max_tokens: int) -> list:
    pool = evidence_sentences()
    configs = [(m, t) for m in (PACKAGED_LLM, PACKAGED_LLM_SMALL) for t in (1, 2)]
    generators = {
        (m, t): LocalGenerator(Settings(llm_model=m, llm_threads=t), max_tokens=max_tokens) for m, t in configs
    }
    for g in generators.values():
        g.warm_up()
    samples: dict[tuple, dict[str, list[float]]] = {c: {"ttft": [], "pp": [], "tg": [], "pn": []} for c in configs}
    for r in range(runs):
        # Each run gets other sentences, so only the system prompt comes from llama.cpp's cache.
        chosen = pool[(5 * r) % len(pool) :][:5] or pool[:5]
        evidence = [Evidence(i, s, "A paper", f"§ {i}") for i, s in enumerate(chosen, start=1)]
        messages = build_messages(QUESTION, evidence)
        for config in configs:
            g = generators[config]
            start = time.perf_counter()
            first = None
            for _ in g.stream(messages):
                first = first or time.perf_counter()
            t = g.last_timings
            s = samples[config]
            s["ttft"].append(((first or time.perf_counter()) - start) * 1000)
            s["pp"].append(t.get("prompt_per_second", 0.0))
            s["tg"].append(t.get("predicted_per_second", 0.0))
            s["pn"].append(t.get("prompt_n", 0))
            print(f"run {r} {config[0]} threads={config[1]}: {json.dumps({k: round(v[-1], 1) for k, v in s.items()})}", flush=True)
    rows = []
    for (m, t), s in samples.items():
        name = f"{m.split(':')[1]} {t}t"
        rows += [
            row("llm", f"{name} time to first token p50", p50(s["ttft"]), "ms"),
            row("llm", f"{name} prompt p50 ({p50(s['pn']):.0f} new tokens)", p50(s["pp"]), "tok/s"),
            row("llm", f"{name} generation p50", p50(s["tg"]), "tok/s"),
        ]
    return rows


def translation_rows(models: list[str]) -> list:
    dev = [(q["question"], q.get("key_points") or []) for q in common.eval_questions("dev_broad")]
    dev = [(q, []) for q, _ in dev if detect_language(q) in ("zh", "ru")]
    rows = []
    for model in models:
        translator = QuestionTranslator(LocalGenerator(Settings(), model=model, max_tokens=64))
        translator.generator.warm_up()
        times, right = [], 0
        for question, words in dev + OWN_QUESTIONS:
            tr = translator.translate(question)
            ok = all(w in tr.english.lower() for w in words)
            right += ok
            times.append(tr.ms)
            print(f"{model} {tr.ms:6.0f} ms {'ok ' if ok or not words else 'MISS'} {question} -> {tr.english}", flush=True)
        name = model.split(":")[1]
        rows += [
            row("translate", f"{name} latency p50", p50(times), "ms"),
            row("translate", f"{name} latency max", max(times), "ms"),
            row("translate", f"{name} own questions with the key words", right - len(dev), f"of {len(OWN_QUESTIONS)}"),
        ]
    return rows


def main() -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--translation-only", action="store_true")
    args = parser.parse_args()
    common.quiet()
    common.header("local generation (llama.cpp via xllamacpp)")
    import xllamacpp

    print(f"llama.cpp CPU backend: {xllamacpp.get_system_info().strip()}; load avg {os.getloadavg()}", flush=True)
    rows = [] if args.translation_only else generation_rows(args.runs, args.max_tokens)
    rows += translation_rows([PACKAGED_LLM_SMALL, PACKAGED_LLM])
    print(f"load avg at the end: {os.getloadavg()}")
    common.finish(rows, args.json)


if __name__ == "__main__":
    main()
