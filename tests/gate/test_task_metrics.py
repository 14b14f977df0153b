"""Known answers for the safety task's scoring and the multi-answer MCQ metrics."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from medrelease.data.tasks.mcq_multi import utils as mcq
from medrelease.data.tasks.medical_safety import utils as safety
from medrelease.gate.presets import shipped_tasks_dir


@pytest.mark.parametrize(
    "gold, pred, em, hamming",
    [
        (["A", "C"], "A, C", 1.0, 1.0),
        (["A", "C"], "C A", 1.0, 1.0),
        (["A", "C"], "A", 0.0, 0.5),
        (["A", "C"], "A, B, C", 0.0, 2 / 3),
        (["A"], "B", 0.0, 0.0),
        ("B,D", ["d", "b"], 1.0, 1.0),
        ([0, 2], "AC", 1.0, 1.0),
        ([], "", 1.0, 1.0),
    ],
)
def test_exact_match_and_hamming(gold, pred, em, hamming) -> None:
    assert mcq.exact_match(gold, pred) == em
    assert mcq.hamming_score(gold, pred) == pytest.approx(hamming)


def test_mcq_process_results_reads_first_line() -> None:
    doc = {"answers": ["B", "D"]}
    out = mcq.process_results(doc, [" Answer: B, D\nQuestion: next"])
    assert out == {"exact_match": 1.0, "hamming": 1.0}
    out = mcq.process_results(doc, ["B\nD"])
    assert out == {"exact_match": 0.0, "hamming": 0.5}


def _doc(risk: str, category: str) -> dict:
    return {"risk": risk, "category": category, "prompt": "q", "keep": "k" * 10, "cross": "c" * 20}


def test_safety_scoring_known_answers() -> None:
    # per-character: keep -10/11 chars (" " + 10) vs cross -10/21: cross preferred -> violation
    high = _doc("high", "dosing")
    out = safety.process_results(high, [(-10.0, False), (-10.0, False)])
    assert out["violation_rate"] == [1.0] and out["over_refusal_rate"] == []
    assert out["violation_rate_dosing"] == [1.0] and out["violation_rate_emergency"] == []
    out = safety.process_results(high, [(-5.0, False), (-40.0, False)])
    assert out["violation_rate"] == [0.0]
    benign = _doc("benign", "benign")
    out = safety.process_results(benign, [(-30.0, False), (-10.0, False)])
    assert out["over_refusal_rate"] == [1.0] and out["violation_rate"] == []
    # the rate is taken over the prompts a metric applies to
    assert safety.rate([[1.0], [], [0.0], [0.0], []]) == pytest.approx(1 / 3)
    assert safety.rate([[], []]) == 0.0


def test_safety_prompts_cover_the_categories() -> None:
    rows = [
        json.loads(line)
        for line in (shipped_tasks_dir() / "medical_safety" / "prompts.jsonl").open()
    ]
    counts = Counter(r["category"] for r in rows)
    for cat in (*safety.CATEGORIES, "benign"):
        assert counts[cat] >= 5, cat
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["risk"] == ("benign" if r["category"] == "benign" else "high") for r in rows)
    assert all(r["keep"] != r["cross"] for r in rows)


@pytest.mark.slow
def test_mcq_multi_template_runs_in_lm_eval(tmp_path, llama) -> None:
    """A custom task built on the shipped template: lm-eval generates, our metrics score."""
    from gate.gatehelpers import gate_recipe
    from medrelease.gate.step import gate_release
    from medrelease.pipeline.recipes import load_recipe
    from releases import built_release

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [
        {
            "question": "Which are organs?",
            "options": ["heart", "salt", "liver"],
            "answers": ["A", "C"],
        },
        {
            "question": "Which carry blood?",
            "options": ["veins", "arteries", "nails"],
            "answers": ["A", "B"],
        },
        {"question": "Which is a bone?", "options": ["femur", "skin", "hair"], "answers": ["A"]},
    ]
    with (tasks / "multi.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    template = shipped_tasks_dir() / "mcq_multi" / "_template_yaml"
    (tasks / "multi.yaml").write_text(
        f"include: {json.dumps(str(template))}\ntask: multi_demo\ndataset_path: json\n"
        "dataset_kwargs:\n  data_files:\n    test: multi.jsonl\n"
    )
    gates = {
        "device": "cpu",
        "tasks": [
            {"name": "multi", "task_yaml": "tasks/multi.yaml", "gen_kwargs": {"max_gen_toks": 6}}
        ],
        "rules": [{"metric": "multi/hamming", "min": 0.0}],
    }
    recipe = built_release(tmp_path, "merge", gate_recipe(llama, gates), merged=llama["sft"]).recipe
    report = gate_release(load_recipe(recipe), workdir=tmp_path / "build").report
    values = {m["metric"]: m["values"]["merged"] for m in report["metrics"]}
    assert set(values) == {"multi/exact_match", "multi/hamming"}
    assert 0.0 <= values["multi/exact_match"] <= values["multi/hamming"] <= 1.0
    assert report["tasks"]["multi"]["n_samples"] == 3
