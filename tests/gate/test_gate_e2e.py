"""`medrelease gate` end to end on tiny llama models: a local task, the safety task and the
mmlu_medical preset on local data; lm-eval run directly gives the same numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.gatehelpers import LOCAL_GATES, gate_inputs, gate_recipe, write_gate_recipe
from helpers import run_cli
from medrelease.core.errors import GateFailed, RecipeError
from medrelease.core.hashing import sha256_file
from medrelease.gate import runner, step
from medrelease.gate.presets import lm_eval_tasks_dir, shipped_tasks_dir
from medrelease.pipeline.recipes import load_recipe
from releases import built_release

pytestmark = pytest.mark.slow

PASSING_RULES = [
    {"metric": "demo_mcq/acc", "min": 0.0},
    {"metric": "medical_safety/violation_rate", "max": 1.0},
    {"metric": "mmlu_medical/acc", "vs": "base", "max_drop": 1.0},
    {"metric": "mmlu_medical/anatomy/acc", "vs": "base", "max_drop": 1.0, "significant": True},
]


def gates_block(**changes: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        **LOCAL_GATES,
        "tasks": [
            {"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"},
            "medical_safety",
            {"preset": "mmlu_medical", "num_fewshot": 1},
        ],
        "rules": PASSING_RULES,
    }
    block.update(changes)
    return block


@dataclass
class Release:
    root: Path
    workdir: Path
    recipe: Path
    llama: dict[str, Path]
    report: dict[str, Any]
    record: dict[str, Any]

    @property
    def merged(self) -> Path:
        return self.workdir / "tiny-gate" / "merged"

    def recipe_with(self, name: str, **changes: Any) -> Path:
        return write_gate_recipe(self.root, self.llama, gates_block(**changes), name)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, llama: dict[str, Path]) -> Release:
    root = tmp_path_factory.mktemp("gate-e2e")
    recipe = gate_recipe(llama, gates_block())
    built = built_release(root, "gate", recipe, merged=gate_inputs(root, llama))
    result = built.results["gate"]
    return Release(root, built.workdir, built.recipe, llama, result.report, result.record)


def test_report_and_manifest(release: Release) -> None:
    rep = release.report
    assert rep["schema_version"] == 1 and rep["passed"] is True and rep["candidate"] == "merged"
    assert rep["models"]["merged"]["kind"] == "merged"
    assert rep["models"]["base"]["kind"] == "stage"
    assert rep["models"]["merged"]["content_hash"] != rep["models"]["base"]["content_hash"]
    assert rep["harness"]["backend"] == "hf" and rep["harness"]["device"] == "cpu"
    mm = rep["tasks"]["mmlu_medical"]
    assert mm["preset"] == "mmlu_medical" and mm["num_fewshot"] == 1 and mm["n_samples"] == 18
    assert sorted(mm["subtasks"]) == sorted(
        [
            "anatomy",
            "clinical_knowledge",
            "college_biology",
            "college_medicine",
            "medical_genetics",
            "professional_medicine",
        ]
    )
    names = {m["metric"] for m in rep["metrics"]}
    assert {"demo_mcq/acc", "demo_mcq/acc_norm", "mmlu_medical/acc"} <= names
    assert "mmlu_medical/anatomy/acc" in names
    assert {"medical_safety/violation_rate", "medical_safety/over_refusal_rate"} <= names
    viol = next(m for m in rep["metrics"] if m["metric"] == "medical_safety/violation_rate")
    assert viol["higher_is_better"] is False
    anatomy = next(m for m in rep["metrics"] if m["metric"] == "mmlu_medical/anatomy/acc")
    assert anatomy["task"] == "mmlu_medical" and anatomy["subtask"] == "anatomy"
    sig = next(r for r in rep["rules"] if r["metric"] == "mmlu_medical/anatomy/acc")
    assert sig["ci"] is not None and sig["ci"][0] <= sig["delta"] <= sig["ci"][1]
    assert len(rep["reproduce"]) == 6 and rep["reproduce"][0].startswith("lm_eval --model hf")

    report_path = release.workdir / "tiny-gate" / "gates" / "report.json"
    assert json.loads(report_path.read_text()) == rep
    manifest = json.loads((release.workdir / "tiny-gate" / "manifest.json").read_text())
    gate = manifest["steps"]["gate"]
    assert gate["status"] == "done" and gate["passed"] is True
    assert gate["report"]["gates/report.json"]["sha256"] == sha256_file(report_path)
    assert gate["models"]["merged"] == rep["models"]["merged"]["content_hash"]
    assert gate["evaluations"] == {"run": 6, "cached": 0}
    assert gate["inputs_hash"] and gate["tools"]["lm_eval"] and gate["timings"]["duration_s"] > 0
    # what the gate writes is what its readers accept: both conform to their typed records
    from medrelease.core.validate import record_problems
    from medrelease.records.gate_report import GateReport
    from medrelease.records.manifest import GateRecord

    assert record_problems(GateReport, json.loads(report_path.read_text())) == []
    assert record_problems(GateRecord, gate) == []


def _override(folder: Path, task: str, include: Path, files: dict[str, Path]) -> None:
    """Written by hand here (not by medrelease): lm-eval's YAML with local data files."""
    cfg = {
        "include": str(include),
        "task": task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}},
    }
    (folder / f"{task}.yaml").write_text(yaml.safe_dump(cfg))


def test_metrics_equal_lm_eval_run_directly(release: Release, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS

    inc = tmp_path / "direct"
    inc.mkdir()
    safety = shipped_tasks_dir() / "medical_safety"
    _override(
        inc, "medical_safety", safety / "_medical_safety_yaml", {"test": safety / "prompts.jsonl"}
    )
    for s in MMLU_MEDICAL_SUBJECTS:
        data = release.root / "eval-data" / "mmlu_medical" / s
        yaml_path = lm_eval_tasks_dir() / "mmlu" / "default" / f"mmlu_{s}.yaml"
        _override(
            inc, f"mmlu_{s}", yaml_path, {"test": data / "test.jsonl", "dev": data / "dev.jsonl"}
        )
    (inc / "mmlu_medical.yaml").write_text(
        (shipped_tasks_dir() / "presets" / "mmlu_medical.yaml").read_text()
    )
    tm = TaskManager(include_path=[str(release.root / "tasks"), str(inc)])
    args = f"pretrained={release.merged}"
    direct: dict[str, dict[str, Any]] = {}
    for tasks, shots in ((["demo_mcq", "medical_safety"], None), (["mmlu_medical"], 1)):
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=args,
            tasks=tasks,
            num_fewshot=shots,
            batch_size=4,
            device="cpu",
            task_manager=tm,
        )
        assert out is not None
        direct.update(out["results"])

    def lm_eval_value(metric: str) -> float:
        parts = metric.split("/")
        task = {"mmlu_medical": "mmlu_medical"}.get(parts[0], parts[0])
        if len(parts) == 3:
            task = f"mmlu_{parts[1]}"
        return float(direct[task][f"{parts[-1]},none"])

    compared = 0
    for m in release.report["metrics"]:
        assert m["values"]["merged"] == pytest.approx(lm_eval_value(m["metric"]), abs=1e-12), m
        compared += 1
    assert compared >= 15


class _Counter:
    def __init__(self, real: Any = None):
        self.real = real
        self.calls: list[str] = []

    def __call__(self, lm: Any, task: Any, **kw: Any) -> Any:
        self.calls.append(task.label)
        if self.real is None:
            raise AssertionError(f"evaluated {task.label} although it was cached")
        return self.real(lm, task, **kw)


def test_second_run_evaluates_nothing(release: Release, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter()
    monkeypatch.setattr(step, "run_lm_eval", counter)
    monkeypatch.setattr(step, "make_lm", lambda *a, **k: pytest.fail("built a model"))
    again = step.gate_release(load_recipe(release.recipe), workdir=release.workdir)
    assert counter.calls == []
    assert again.record["evaluations"] == {"run": 0, "cached": 6}
    assert again.report["metrics"] == release.report["metrics"]


def test_changing_a_setting_reevaluates_only_that_task(
    release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter(runner.run_lm_eval)
    monkeypatch.setattr(step, "run_lm_eval", counter)
    tasks = gates_block()["tasks"]
    tasks[0] = {**tasks[0], "limit": 6}
    recipe = release.recipe_with("limit6.yaml", tasks=tasks)
    out = step.gate_release(load_recipe(recipe), workdir=release.workdir)
    assert counter.calls == ["demo_mcq", "demo_mcq"]  # merged + base, nothing else
    assert out.report["tasks"]["demo_mcq"]["n_samples"] == 6
    # --no-cache evaluates again even with unchanged inputs
    counter.calls.clear()
    only_demo = release.recipe_with("nocache.yaml", tasks=tasks[:1], rules=[])
    step.gate_release(load_recipe(only_demo), workdir=release.workdir, use_cache=False)
    assert counter.calls == ["demo_mcq", "demo_mcq"]


def _values(report: dict[str, Any], metric: str) -> tuple[float, float]:
    m = next(x for x in report["metrics"] if x["metric"] == metric)
    return m["values"]["merged"], m["values"]["base"]


def test_every_rule_kind_passes_and_fails_on_real_metrics(release: Release) -> None:
    rep = release.report
    acc, _ = _values(rep, "demo_mcq/acc")
    viol, _ = _values(rep, "medical_safety/violation_rate")
    # the per-subject or group metric where merged and base differ most
    diffs = {
        m["metric"]: m["values"]["merged"] - m["values"]["base"]
        for m in rep["metrics"]
        if m["metric"].startswith("mmlu_medical/") or m["metric"].startswith("demo_mcq/")
    }
    metric = max(diffs, key=lambda k: abs(diffs[k]))
    d = diffs[metric]
    assert abs(d) > 0, "the tiny candidate should differ from the base somewhere"
    hib = d > 0  # read the metric in the direction in which the candidate improved
    rules = [
        {"metric": "demo_mcq/acc", "min": acc},  # pass
        {"metric": "demo_mcq/acc", "min": acc + 0.01},  # fail
        {"metric": "medical_safety/violation_rate", "max": viol},  # pass (lower is better)
        {"metric": "medical_safety/violation_rate", "max": viol - 0.01},  # fail
        {"metric": metric, "vs": "base", "max_drop": 0.0, "higher_is_better": hib},  # pass
        {"metric": metric, "vs": "base", "max_drop": abs(d) / 2, "higher_is_better": not hib},
        {"metric": metric, "vs": "base", "min_gain": abs(d), "higher_is_better": hib},  # pass
        {"metric": metric, "vs": "base", "min_gain": abs(d) + 0.01, "higher_is_better": hib},
    ]
    expected = [True, False, True, False, True, False, True, False]
    recipe = release.recipe_with("rules.yaml", rules=rules)
    with pytest.raises(GateFailed) as err:
        step.gate_release(load_recipe(recipe), workdir=release.workdir)
    assert err.value.exit_code == 4
    report = json.loads((release.workdir / "tiny-gate" / "gates" / "report.json").read_text())
    assert report["passed"] is False
    assert [r["passed"] for r in report["rules"]] == expected, [
        r["reason"] for r in report["rules"]
    ]
    manifest = json.loads((release.workdir / "tiny-gate" / "manifest.json").read_text())
    assert manifest["steps"]["gate"]["status"] == "failed"
    assert manifest["steps"]["gate"]["rules"] == {"total": 8, "failed": 4}


def test_cli_json_table_and_exit_codes(release: Release, capsys: pytest.CaptureFixture) -> None:
    assert run_cli("gate", release.recipe, "--workdir", release.workdir, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True and out["metrics"]
    assert run_cli("gate", release.recipe, "--workdir", release.workdir) == 0
    table = capsys.readouterr().out
    assert "PASSED" in table and "merged" in table and "base" in table and "pass" in table
    failing = release.recipe_with("fail.yaml", rules=[{"metric": "demo_mcq/acc", "min": 1.5}])
    assert run_cli("gate", failing, "--workdir", release.workdir, "--json") == 4
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is False
    assert "gate rule(s) failed" in captured.err
    bad = release.recipe_with("bad.yaml", baselines=["bsae"], rules=[])
    assert run_cli("gate", bad, "--workdir", release.workdir) == 2
    assert "did you mean 'base'" in capsys.readouterr().err


def test_rule_on_a_misspelt_metric_is_a_recipe_error(release: Release) -> None:
    typo = release.recipe_with("typo.yaml", rules=[{"metric": "mmlu_medical/anatomy/ac", "min": 0}])
    with pytest.raises(RecipeError, match="did you mean 'mmlu_medical/anatomy/acc'") as err:
        step.gate_release(load_recipe(typo), workdir=release.workdir)
    assert err.value.exit_code == 2 and "typo.yaml:" in str(err.value)


def test_baseline_must_be_a_stage(release: Release) -> None:
    bad = release.recipe_with("bad2.yaml", baselines=["nope"], rules=[])
    with pytest.raises(RecipeError, match="'nope' is not a stage") as err:
        step.gate_release(load_recipe(bad), workdir=release.workdir)
    assert "bad2.yaml:" in str(err.value)


def test_evaluate_lm_gives_the_report_metric_names(release: Release) -> None:
    from medrelease.gate.evaluate import evaluate_lm

    only_demo = release.recipe_with(
        "demo.yaml", tasks=[{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}], rules=[]
    )
    lm = runner.make_lm("hf", release.merged, {}, 4, "cpu")
    values = evaluate_lm(lm, load_recipe(only_demo))
    assert set(values) == {"demo_mcq/acc", "demo_mcq/acc_norm"}
    for name, value in values.items():
        assert value == pytest.approx(_values(release.report, name)[0], abs=1e-12)


def test_validate_knows_every_metric_name_the_gate_reports(release: Release) -> None:
    """One naming rule (gate/metric_names.py): the names `medrelease validate` reads from the
    task YAMLs before evaluating are exactly the names the gate reported after evaluating."""
    from medrelease.gate.metric_names import task_metric_names

    recipe = load_recipe(release.recipe).recipe
    assert recipe.gates is not None
    predicted: set[str] = set()
    for task in recipe.gates.tasks:
        names = task_metric_names(task, release.recipe.parent)
        assert names is not None, task.label
        predicted |= names
    assert predicted == {m["metric"] for m in release.report["metrics"]}
