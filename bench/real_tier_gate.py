"""The gate's peak memory on the real-model tier: lm-eval's stock hf backend vs medrelease's.

The real-model tier's release (tests/real/test_real_release.py: SmolLM2-135M-Instruct, its
two real fine-tunes merged with TIES, `mmlu_medical` 0-shot on the shipped MMLU rows, batch 8,
the merged model and the base) gated twice, each in a fresh process measured by
bench/child_stats.py:

* before: the gate with lm-eval's own `HFLM` (what `medrelease gate` ran until the LM head was
  computed only at the scored positions);
* after: `medrelease gate` as shipped (`gate/scored_lm.py`).

Both must give the same numbers (checked here); the figures are wall time and peak RSS.

    .venv/bin/python bench/real_tier_gate.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from measure import run_measured  # noqa: E402

STOCK = """
import sys
from lm_eval.models.huggingface import HFLM
import medrelease.gate.scored_lm as scored
scored.ScoredHFLM = HFLM  # the runner takes the class from this module when it builds the model
from medrelease.cli import main
sys.exit(main(sys.argv[1:]))
"""
OURS = "import sys; from medrelease.cli import main; sys.exit(main(sys.argv[1:]))"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mr-bench-real-tier-gate"))
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--model",
        help="another real model (e.g. qwen2.5-coder-0.5b, 152k vocabulary): the release is "
        "that model alone (a linear merge of weight 1)",
    )
    ap.add_argument("--fewshot", type=int, default=0, help="MMLU shots (the tier uses 0)")
    args = ap.parse_args()
    from helpers import write_recipe
    from medrelease.testing.realmodels import fine_tunes, real_model
    from real.test_real_release import MERGE, MODEL, NAME, write_mmlu_data

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write_mmlu_data(work / "eval-data")
    if args.model:
        stages: dict[str, Any] = {"base": str(real_model(args.model))}
        merge: dict[str, Any] = {
            "merge_method": "linear",
            "models": [{"model": "base", "parameters": {"weight": 1.0}}],
        }
    else:
        tuned = {k: str(v) for k, v in fine_tunes(MODEL).items()}
        stages = {"base": str(real_model(MODEL))}
        stages.update({n: {"path": p, "parent": "base"} for n, p in tuned.items()})
        merge = MERGE
    recipe = write_recipe(
        work / "recipe.yaml",
        stages,
        merge,
        name=NAME,
        gates={
            "baselines": ["base"],
            "device": "cpu",
            "batch_size": 8,
            "data_dir": "eval-data",
            "tasks": [{"preset": "mmlu_medical", "num_fewshot": args.fewshot}],
        },
    )
    py = sys.executable
    wd = work / "build"
    run_measured([py, "-c", OURS, "merge", str(recipe), "--workdir", str(wd)], env=OFFLINE)
    figures = {}
    for label, code in (("stock lm-eval hf", STOCK), ("medrelease (scored positions)", OURS)):
        cmd = [py, "-c", code, "gate", str(recipe), "--workdir", str(wd), "--no-cache"]
        run = run_measured(cmd, env=OFFLINE)
        report = json.loads((wd / NAME / "gates" / "report.json").read_text())
        figures[label] = {
            "wall_s": round(run.wall_s, 1),
            "peak_rss_mib": round(run.max_rss_mib),
            "tree_rss_mib": round(run.tree_rss_mib),
            "metrics": {m["metric"]: m["values"] for m in report["metrics"]},
        }
        print(f"{label}: {run.wall_s:.1f} s, peak RSS {run.max_rss_mib:.0f} MiB", flush=True)
    a, b = figures.values()
    same = a["metrics"] == b["metrics"]
    print(f"same numbers: {same}")
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
