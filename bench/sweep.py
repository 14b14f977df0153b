"""Measure `medrelease sweep`: trials per hour (local vs Ray), the overhead per trial, and the
items pruning saves (with the front it leaves).

    .venv/bin/python bench/sweep.py --tier tiny --trials 6 --out sweep-bench.json
    .venv/bin/python bench/sweep.py --tier real --trials 12 --out sweep-bench-real.json

`tiny`: the tiny llama stages of the test suite (medrelease.testing.tiny) and the demo MCQ
task (search items 4..11). `real`: SmolLM2-135M-Instruct and its two real fine-tunes
(medrelease.testing.realmodels; PyPI), real MMLU medical items, the recipe of
tests/sweep/test_real_sweep.py. Runs, each in its own workdir, on a recorded seed with the random
sampler (its proposals do not depend on the results, so every run sees the same parameters):

1. local executor, no pruning;
2. Ray executor (a local Ray instance on this machine's CPUs), no pruning;
3. local executor, pruning (WilcoxonPruner, asked every `--increment` items per subtask
   inside each trial's one lm-eval run).

Overhead per trial: the trial's wall time minus the time in the model's forward passes (timed
around the network's own calls, medrelease.gate.forward_clock), as a share of the wall time: the
merge, the model load, lm-eval's request building and tokenization all count as overhead. The
older, kinder measure (wall time minus everything inside lm-eval) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
for sub in ("tests", "tests/gate", "tests/sweep"):
    sys.path.insert(0, str(ROOT / sub))


def _recipe(
    tier: str, root: Path, trials: int, model: str | None = None, fine_tune: str | None = None
) -> Path:
    if tier == "tiny":
        from sweephelpers import write_sweep_recipe

        from medrelease.testing.tiny import TinySpec, build_tiny_model, derive_stage

        base = build_tiny_model(root / "models" / "base", TinySpec(arch="llama", seed=1))
        stages = {"base": base}
        for i, name in enumerate(("sft", "dpo"), start=1):
            stages[name] = derive_stage(base, root / "models" / name, seed=100 + i, scale=0.02 * i)
        return write_sweep_recipe(root, stages)
    from test_real_sweep import MODEL, write_real_recipe

    from medrelease.testing.realmodels import FineTune, fine_tunes, real_model

    name = model or MODEL
    settings = None
    if fine_tune:  # STEPS,LR: longer fine-tunes, task vectors that change answers
        steps, lr = fine_tune.split(",")
        settings = FineTune(steps=int(steps), lr=float(lr))
    stages = {"base": real_model(name), **fine_tunes(name, settings)}
    return write_real_recipe(root, stages, trials)


def _run(
    recipe: Path, workdir: Path, trials: int, seed: int, sets: list[str], executor: str
) -> dict[str, Any]:
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.sweep.study import run_sweep

    sets = [*sets, "sweep.sampler=random", f"sweep.seed={seed}"]
    loaded = load_recipe(recipe, sets=sets)
    start = time.monotonic()
    result = run_sweep(
        loaded, workdir=workdir, trials=trials, executor=executor, reporter=Reporter(quiet=True)
    )
    wall = time.monotonic() - start
    report = dict(result.report)
    done = [t for t in report["trials"] if t["state"] in ("complete", "pruned")]
    shares = [_overhead(t) / t["duration_s"] for t in done if t["duration_s"]]
    lm_shares = [
        (t["duration_s"] - t.get("lm_eval_s", 0.0)) / t["duration_s"]
        for t in done
        if t["duration_s"]
    ]
    return {
        "executor": executor,
        "sets": sets,
        "wall_s": round(wall, 1),
        "trials": len(done),
        "trials_per_hour": round(len(done) / wall * 3600, 1),
        "trial_s_median": statistics.median(t["duration_s"] for t in done),
        "merge_s_median": statistics.median(t.get("merge_s", 0.0) for t in done),
        "lm_eval_s_median": statistics.median(t.get("lm_eval_s", 0.0) for t in done),
        "forward_s_median": statistics.median(t.get("forward_s", 0.0) for t in done),
        "overhead_share_median": round(statistics.median(shares), 3) if shares else None,
        # everything but the forward passes, in seconds
        "overhead_s_median": statistics.median(round(_overhead(t), 2) for t in done),
        "outside_lm_eval_share_median": round(statistics.median(lm_shares), 3)
        if lm_shares
        else None,
        "items_per_trial": statistics.median(t["items"]["evaluated"] for t in done),
        "per_trial": [
            {
                k: t.get(k)
                for k in ("number", "state", "duration_s", "merge_s", "lm_eval_s", "forward_s")
            }
            | {"items": t["items"]["evaluated"]}
            for t in done
        ],
        "items": report["items"],
        "front": report["front"],
        "values": {t["number"]: t["values"] for t in report["trials"]},
        "states": {t["number"]: t["state"] for t in report["trials"]},
    }


def _overhead(t: dict[str, Any]) -> float:
    """A trial's seconds outside its model's forward passes."""
    return float(t["duration_s"]) - float(t.get("forward_s", 0.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--increment", type=int, default=2)
    ap.add_argument("--p-threshold", type=float, default=0.1)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-pruning", action="store_true", help="no run with pruning")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        help="recipe override for every run (KEY=VALUE, as `medrelease sweep --set`)",
    )
    ap.add_argument("--model", help="real tier: a model of medrelease.testing.realmodels")
    ap.add_argument(
        "--fine-tune", metavar="STEPS,LR", help="real tier: the stages' fine-tune (default 3,1e-4)"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medrelease-sweep-bench-") as tmp:
        root = Path(tmp)
        recipe = _recipe(args.tier, root, args.trials, args.model, args.fine_tune)
        runs = {"local": _run(recipe, root / "local", args.trials, args.seed, args.sets, "local")}
        if not args.skip_ray:
            runs["ray"] = _run(recipe, root / "ray", args.trials, args.seed, args.sets, "ray")
        if not args.skip_pruning:
            prune = [
                *args.sets,
                f"sweep.pruning={{increment: {args.increment}, p_threshold: {args.p_threshold}}}",
            ]
            runs["pruned"] = _run(recipe, root / "pruned", args.trials, args.seed, prune, "local")
    local = runs["local"]
    result: dict[str, Any] = {
        "tier": args.tier,
        "seed": args.seed,
        "runs": runs,
        "overhead_share_local": local["overhead_share_median"],
    }
    if "pruned" in runs:
        result["same_front_with_pruning"] = runs["pruned"]["front"] == local["front"]
        result["items_saved_by_pruning"] = runs["pruned"]["items"]["saved"]
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    for name, r in runs.items():
        print(
            f"{name:7s} {r['trials']} trials in {r['wall_s']} s: {r['trials_per_hour']} trials/h,"
            f" trial {r['trial_s_median']:.1f} s (merge {r['merge_s_median']:.1f} s, lm-eval "
            f"{r['lm_eval_s_median']:.1f} s, forward passes {r['forward_s_median']:.1f} s),"
            f" overhead {r['overhead_share_median']} ({r['overhead_s_median']:.1f} s; outside"
            f" lm-eval {r['outside_lm_eval_share_median']}), items "
            f"{r['items']}"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
