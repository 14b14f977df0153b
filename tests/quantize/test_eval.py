"""Gate tasks on a GGUF through llama.cpp in process (lm-eval `LM` subclass), judged by recovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantize.quanthelpers import RELEASE, quant_release

pytestmark = pytest.mark.slow

MCQ = [
    ("Which organ pumps blood through the body?", ["heart", "liver", "lung", "skin"], 0),
    ("Which organ makes insulin?", ["kidney", "pancreas", "brain", "spleen"], 1),
    ("Red blood cells mainly carry?", ["oxygen", "bile", "urine", "lymph"], 0),
    ("How many chambers has the human heart?", ["two", "three", "four", "five"], 2),
    ("The trachea carries?", ["food", "air", "blood", "bile"], 1),
    ("Which cells fight infection?", ["white cells", "platelets", "neurons", "red cells"], 0),
]

TASK = {
    "task": "quant_mcq",
    "dataset_path": "json",
    "dataset_kwargs": {"data_files": {"test": "quant_mcq.jsonl"}},
    "test_split": "test",
    "output_type": "multiple_choice",
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_choice": "{{choices}}",
    "doc_to_target": "answer",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    "metadata": {"version": 1.0},
}


class _Req:
    def __init__(self, *args: Any):
        self.args = args


def _recipe(tmp_path: Path, tiny_llama: Path, checks: dict[str, Any]) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    with (tasks / "quant_mcq.jsonl").open("w") as fh:
        for q, choices, answer in MCQ:
            fh.write(json.dumps({"question": q, "choices": choices, "answer": answer}) + "\n")
    (tasks / "quant_mcq.yaml").write_text(yaml.safe_dump(TASK))
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": ["Q8_0"], "checks": checks}).recipe
    data = yaml.safe_load(recipe.read_text())
    data["gates"] = {"tasks": [{"name": "quant_mcq", "task_yaml": "tasks/quant_mcq.yaml"}]}
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    return recipe


def _write_report(root: Path, acc: float) -> None:
    (root / "gates").mkdir(parents=True, exist_ok=True)
    metric = {
        "metric": "quant_mcq/acc",
        "task": "quant_mcq",
        "name": "acc",
        "higher_is_better": True,
        "values": {"merged": acc},
    }
    report = {
        "schema_version": 1,
        "passed": True,
        "candidate": "merged",
        # what every gate report has (records/gate_report.py): quantize validates it on read
        "models": {"merged": {"kind": "merged", "path": "merged", "content_hash": "0" * 64}},
        "tasks": {"quant_mcq": {"task_yaml": "tasks/quant_mcq.yaml"}},
        "metrics": [metric],
        "rules": [],
    }
    (root / "gates" / "report.json").write_text(json.dumps(report))


def test_llama_cpp_lm_scores_like_transformers(tmp_path, tiny_llama):
    """Independent check of the LM subclass: F32 GGUF loglikelihoods == transformers' (HFLM)."""
    from lm_eval.models.huggingface import HFLM

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.gguf.lm import LlamaCppLM
    from medrelease.testing.llama import open_gguf

    (path,) = convert(tiny_llama, tmp_path, "f32", "f32", None)
    reqs = [_Req(f"Question: {q}\nAnswer:", f" {c[a]}") for q, c, a in MCQ]
    hf = HFLM(pretrained=str(tiny_llama), device="cpu", batch_size=1).loglikelihood(reqs)
    llm = open_gguf(path, 256, 2)
    try:
        ours = LlamaCppLM(llm, path).loglikelihood(reqs)
        rolling = LlamaCppLM(llm, path).loglikelihood_rolling([_Req("The heart pumps blood.")])
    finally:
        llm.close()
    for (a, ga), (b, gb) in zip(hf, ours, strict=True):
        assert abs(a - b) < 1e-2, (a, b)
        assert ga == gb
    assert rolling[0] < 0


def test_eval_check_accepts_and_rejects_by_recovery(tmp_path, tiny_llama):
    from lm_eval.models.huggingface import HFLM

    from medrelease.core.console import Reporter
    from medrelease.gate.evaluate import evaluate_lm
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    recipe = _recipe(tmp_path, tiny_llama, {"eval": True, "min_recovery": 0.5})
    loaded = load_recipe(recipe)
    root = tmp_path / RELEASE
    # the merged model's value, measured the way `medrelease gate` measures it
    merged = evaluate_lm(HFLM(pretrained=str(root / "merged"), device="cpu"), loaded)
    _write_report(root, merged["quant_mcq/acc"])
    result = quantize_release(loaded, workdir=tmp_path, reporter=Reporter(quiet=True))
    (q,) = result.record["quants"]
    ev = q["checks"]["eval"]
    assert set(ev["metrics"]) >= {"quant_mcq/acc"}
    assert ev["ok"] and q["accepted"], q["reason"]
    assert ev["recovery"]["quant_mcq/acc"] >= 0.5


def test_recovery_rule_rejects_a_collapsed_metric():
    from medrelease.quantize.base import QuantArtifact
    from medrelease.quantize.measure.recovery import judge_recovery

    parent = {"t/acc": (0.60, True), "t/violation_rate": (0.02, False)}
    ok = judge_recovery({"t/acc": 0.58, "t/violation_rate": 0.02}, parent, 0.95)
    assert ok["ok"] and ok["recovery"] == {"t/acc": 0.966667, "t/violation_rate": 1.0}
    bad = judge_recovery({"t/acc": 0.30, "t/violation_rate": 0.04}, parent, 0.95)
    assert not bad["ok"]
    assert "t/acc 0.3 vs merged 0.6 (recovery 0.500)" in bad["detail"]
    assert "t/violation_rate 0.04 vs merged 0.02 (recovery 0.500)" in bad["detail"]
    assert not judge_recovery({}, parent, 0.95)["ok"]  # a missing metric is a failure
    art = QuantArtifact("gguf", "Q2_K", [], Path("x.gguf"), checks={"eval": bad})
    art.judge()
    assert not art.accepted and art.reason and art.reason.startswith("eval: below 0.95")


def test_eval_needs_a_gate_report(tmp_path, tiny_llama):
    from medrelease.core.errors import InputError
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    recipe = _recipe(tmp_path, tiny_llama, {"eval": True})
    with pytest.raises(InputError, match=r"gates/report\.json, which does not exist") as info:
        quantize_release(load_recipe(recipe), workdir=tmp_path)
    assert "medrelease gate RECIPE" in (info.value.hint or "")
