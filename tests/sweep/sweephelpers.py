"""A tiny sweep recipe: three tiny llama stages, the demo MCQ task (gate items 0..3, search
items 4..11), a linear merge whose sft weight and dpo weight are searched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gate.gatehelpers import write_demo_task

RECIPE_HEAD = """\
# A sweep test recipe. Comments must survive --adopt.
release:
  name: tiny-sweep
  version: 0.1.0
  repo: medrelease-tests/tiny-sweep
  license: apache-2.0
stages:
  base: {base}
  sft: {sft}
  dpo: {dpo}
merge:
  merge_method: linear   # searched below
  models:
    - model: sft
      parameters: {{weight: 0.5}}   # hand-set
    - model: dpo
      parameters:
        weight: 0.5   # hand-set too
  dtype: float32
"""


def write_sweep_recipe(
    root: Path, llama: dict[str, Path], sweep: dict[str, Any] | None = None, **gates: Any
) -> Path:
    write_demo_task(root / "tasks", relative=True)
    gate_block = {
        "baselines": ["base"],
        "device": "cpu",
        "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml", "limit": 4}],
        "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
        **gates,
    }
    sweep_block = sweep or {
        "space": [
            {"path": "models.0.parameters.weight", "low": 0.1, "high": 0.9},
            {"path": "models.1.parameters.weight", "low": 0.1, "high": 0.9},
        ],
        "objectives": [{"metric": "demo_mcq/acc", "direction": "maximize"}],
        "search": {"demo_mcq": {"start": 4, "count": 8}},
        "trials": 3,
        "sampler": "random",
        "seed": 3,
    }
    text = RECIPE_HEAD.format(**{k: str(v) for k, v in llama.items()})
    card = {"stage_licenses": dict.fromkeys(("base", "sft", "dpo"), "apache-2.0")}
    text += yaml.safe_dump({"gates": gate_block, "card": card}, sort_keys=False)
    text += "# the search\n" + yaml.safe_dump({"sweep": sweep_block}, sort_keys=False)
    path = root / "recipe.yaml"
    path.write_text(text)
    return path


def trial_states(db: Path) -> list[str]:
    """The states of a study's trials, in order; none while the database is not there yet."""
    import sqlite3

    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db) as con:
            return [r[0] for r in con.execute("select state from trials order by number")]
    except sqlite3.Error:  # tables not created yet, or locked for a moment
        return []


def _params_per_trial(db: Path) -> list[int]:
    import sqlite3

    try:
        with sqlite3.connect(db) as con:
            rows = con.execute(
                "select t.number, count(p.param_id) from trials t left join trial_params p"
                " on p.trial_id = t.trial_id group by t.number order by t.number"
            )
            return [r[1] for r in rows]
    except sqlite3.Error:
        return []


def wait_second_trial_running(db: Path, proc: Any, timeout_s: float) -> None:
    """Wait until the first trial is complete and the second runs with all its parameters drawn.

    A trial is RUNNING in the database before its parameters are drawn; killed in that moment,
    it has nothing to re-run, and a test of the re-run would find none (CI saw this once)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        if trial_states(db) == ["COMPLETE", "RUNNING"]:
            counts = _params_per_trial(db)
            if len(counts) == 2 and counts[1] == counts[0] > 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"the second trial did not start within {timeout_s:.0f} s")
