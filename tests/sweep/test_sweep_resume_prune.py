"""Resume after `kill -9` (the running trial is marked failed and re-run, no parameter set is
evaluated twice) and pruning inside a trial's evaluation (items saved recorded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from sweep.sweephelpers import trial_states, wait_second_trial_running, write_sweep_recipe

pytestmark = pytest.mark.slow


@pytest.mark.heavy  # a second process importing torch, three trials: not in make test
def test_kill_9_mid_trial_then_resume_repeats_no_trial(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    recipe = write_sweep_recipe(tmp_path, llama)
    workdir = tmp_path / "build"
    db = workdir / "tiny-sweep" / "sweep" / "study.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    code = "import sys; from medrelease.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "sweep", str(recipe), "--workdir", str(workdir)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill while the second trial runs (one complete, one RUNNING with its parameters)
    wait_second_trial_running(db, proc, timeout_s=240)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert trial_states(db) == ["COMPLETE", "RUNNING"]

    assert run_cli("sweep", recipe, "--workdir", workdir, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    trials = report["trials"]
    assert [t["state"] for t in trials] == ["complete", "fail", "complete", "complete"]
    assert "interrupted" in (trials[1]["reason"] or "")
    assert trials[2]["retry_of"] == 1 and trials[2]["params"] == trials[1]["params"]
    done = [tuple(sorted(t["params"].items())) for t in trials if t["state"] == "complete"]
    assert len(done) == len(set(done)) == 3  # the budget, no parameter set twice


def test_pruning_records_items_saved_and_reports_every_scored_item(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    import optuna

    sweep = {
        "space": [
            {"path": "models.0.parameters.weight", "low": 0.0, "high": 1.0},
            {"path": "models.1.parameters.weight", "low": 0.0, "high": 1.0},
        ],
        "objectives": [{"metric": "demo_mcq/acc"}],
        "search": {"demo_mcq": {"start": 4, "count": 8}},
        "trials": 4,
        "sampler": "random",
        "seed": 11,
        "pruning": {"increment": 2, "p_threshold": 0.99},
    }
    recipe = write_sweep_recipe(tmp_path, llama, sweep)
    workdir = tmp_path / "build"
    assert run_cli("sweep", recipe, "--workdir", workdir, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    total_saved = 0
    for t in report["trials"]:
        items = t["items"]
        assert items["total"] == 8 and items["evaluated"] + items["saved"] == 8
        assert items["evaluated"] % 2 == 0
        assert (items["saved"] > 0) == (t["state"] == "pruned")
        total_saved += items["saved"]
    assert report["items"]["saved"] == total_saved
    # every trial reported its items one by one (steps = document ids of the search split): a
    # complete trial all 8, a pruned one those it was scored on
    db = workdir / "tiny-sweep" / "sweep" / "study.db"
    study = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{db}")
    for t, entry in zip(study.trials, report["trials"], strict=True):
        steps = set(t.intermediate_values)
        assert steps <= set(range(4, 12)) and len(steps) == entry["items"]["evaluated"]


def test_a_trial_worse_on_every_item_is_pruned_early(
    tmp_path: Path,
    llama: dict[str, Path],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The evaluation is replaced by a fixed verdict (the first trial's merge answers every item
    right, every other merge every item wrong): the merges and Optuna's WilcoxonPruner are real.
    One-sided Wilcoxon on n items all worse: p = 2**-n, so p < 0.1 after 4 items (2 checks)."""
    from medrelease.sweep import evaluate

    first: list[str] = []

    class Task:  # what the watch hands on: lm-eval's Task, for the metrics' directions
        def higher_is_better(self) -> dict[str, bool]:
            return {"acc": True}

    def fake_outcome(
        self: evaluate.ModelEvaluator,
        stask: Any,
        samples: dict[str, list[int]],
        on_item: Any = None,
    ) -> dict:
        model = self.model
        if model.name == "merged" and not first:
            first.append(model.content_hash)
        score = 1.0 if model.name != "merged" or model.content_hash == first[0] else 0.0
        if on_item is not None:  # as lm-eval's run would, item by item (may stop it)
            for leaf, ix in samples.items():
                for i in ix:
                    on_item(leaf, Task(), [{"doc_id": i, "filter": "none", "acc": score}])
        items = {f"{leaf}:{i}": [score, 1.0] for leaf, ix in samples.items() for i in ix}
        value = sum(v[0] for v in items.values()) / len(items)
        metric = {
            "metric": "demo_mcq/acc",
            "task": "demo_mcq",
            "subtask": None,
            "name": "acc",
            "higher_is_better": True,
            "value": value,
            "stderr": None,
        }
        return {
            "label": "demo_mcq",
            "n_samples": len(items),
            "subtasks": [],
            "metrics": {"demo_mcq/acc": metric},
            "samples": {"demo_mcq/acc": items},
        }

    monkeypatch.setattr(evaluate.ModelEvaluator, "outcome", fake_outcome)
    sweep = {
        "space": [{"path": "models.0.parameters.weight", "choices": [0.2, 0.5, 0.8]}],
        "objectives": [{"metric": "demo_mcq/acc"}],
        "search": {"demo_mcq": {"start": 4, "count": 8}},
        "trials": 3,
        "sampler": "grid",
        "seed": 0,
        "pruning": {"increment": 2, "p_threshold": 0.1},
    }
    recipe = write_sweep_recipe(tmp_path, llama, sweep)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    states = [t["state"] for t in report["trials"]]
    assert states == ["complete", "pruned", "pruned"]
    for t in report["trials"][1:]:
        assert t["items"] == {"evaluated": 4, "total": 8, "saved": 4}
        assert t["metrics"]["demo_mcq/acc"]["value"] == 0.0
    assert report["items"] == {"evaluated": 16, "saved": 8}
    assert report["front"] == [0] and report["best"] == 0
