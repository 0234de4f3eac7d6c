"""The quality gate: the validation split (documents never used for fitting), answered by the
default extractive engine with the real models, must not fall more than 0.02 below the figures
reached when it was last fitted (bench/quality/gate.json), nor below the rule-free baseline
scored in the same run. Later work cannot then lose what the fitted reader won unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
GATE = ROOT / "bench" / "quality" / "gate.json"
TOLERANCE = 0.02
HIGHER_IS_BETTER = ("evidence_in_quote", "key_point_coverage", "citation_precision", "abstention")


@pytest.mark.slow
def test_validation_figures_hold(tmp_path_factory):
    from culture_rag.evaluate.compare import run_splits
    from culture_rag.evaluate.pool import read_split

    gate = json.loads(GATE.read_text(encoding="utf-8"))
    cache = Path.home() / ".cache" / "culture-rag" / "eval"  # the collections' indexes, built once per machine
    results = run_splits(SHARED, read_split(ROOT / "bench/quality/split.json"), ROOT / "bench/quality/own_broad.jsonl",
                         ["validation"], engines=("baseline", "fitted"), forms=tuple(gate["forms"]),
                         languages=tuple(gate["languages"]), cache=cache)
    failures = []
    for key, reached in gate["figures"].items():
        now = results[key]
        for metric, value in reached.items():
            got = now[metric]
            if metric in HIGHER_IS_BETTER and got < value - TOLERANCE:
                failures.append(f"{key} {metric}: {got:.3f}, reached {value:.3f}")
            if metric == "false_abstention" and got > value + TOLERANCE:
                failures.append(f"{key} {metric}: {got:.3f}, reached {value:.3f}")
    for form in gate["forms"]:  # the paper chosen in the picker, or named by its title in the question
        fitted, baseline = results[f"validation/all/{form}/fitted"], results[f"validation/all/{form}/baseline"]
        for metric in ("evidence_in_quote", "key_point_coverage", "citation_precision"):
            if fitted[metric] < baseline[metric]:
                failures.append(f"{form} {metric}: fitted {fitted[metric]:.3f} below the baseline's {baseline[metric]:.3f}")
    assert not failures, "; ".join(failures)
