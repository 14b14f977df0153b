"""Measure what AWQ does to real models: the data behind the AWQ default limits.

    .venv/bin/python bench/awq_calibration.py MODEL_DIR [MODEL_DIR ...] --out awq.json

For each model folder (a real checkpoint, e.g. `python -m medrelease.testing.realmodels
prepare smollm2-135m`) and each AWQ scheme: `medrelease quantize` exactly as a release runs it
(llm-compressor on the shipped calibration chats with the recipe defaults, group size `auto`;
then the product's checks against the merged model on the shipped held-out text), with the
acceptance limits switched off so every measure is recorded whatever it is. Prints a markdown
table (the one in docs/quant-checks.md), applies today's default limits to each row, and
writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SCHEMES = ("W4A16_ASYM", "W4A16")
OPEN = {"max_kld_mean": 1e9, "max_kld_p99": 1e9, "max_ppl_ratio": 1e9}
MEASURES = ("kld_mean", "kld_p99", "top1_agreement", "ppl_ratio")


def measure(model: Path, scheme: str, work: Path) -> dict[str, Any]:
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    release = work / "awq-cal" / "merged"
    shutil.copytree(model, release)
    recipe = work / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "release": {
                    "name": "awq-cal",
                    "version": "0.1.0",
                    "repo": "bench/awq-cal",
                    "license": "apache-2.0",
                },
                "stages": {"base": str(model)},
                "merge": {"merge_method": "linear", "models": [{"model": "base"}]},
                "quantize": {"awq": {"scheme": scheme, "thresholds": OPEN}},
            },
            sort_keys=False,
        )
    )
    t0 = time.perf_counter()
    result = quantize_release(
        load_recipe(recipe, check_merge=False), workdir=work, reporter=Reporter(quiet=True)
    )
    (q,) = result.record["quants"]
    logits = q["checks"].get("logits") or {}
    cfg = json.loads((work / "awq-cal" / "quant" / "awq" / "config.json").read_text())
    (group,) = cfg["quantization_config"]["config_groups"].values()
    return {
        "model": model.name,
        "scheme": scheme,
        "seconds": round(time.perf_counter() - t0, 1),
        "group_size": group["weights"]["group_size"],
        "quantized_layers": (q["checks"].get("contents") or {}).get("quantized_layers"),
        "measures": {k: (logits.get("measures") or {}).get(k) for k in MEASURES},
        "checks_ok": {k: bool(v.get("ok")) for k, v in q["checks"].items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from medrelease.quantize.awq.check import DEFAULT_LIMITS
    from medrelease.quantize.measure.judge import judge_logits

    rows = []
    for model in args.models:
        for scheme in args.schemes:
            with tempfile.TemporaryDirectory(prefix="mr-awq-cal-") as tmp:
                row = measure(model.resolve(), scheme, Path(tmp))
            verdict = judge_logits(dict(row["measures"]), DEFAULT_LIMITS[scheme])
            row["default_limits"] = "accepted" if verdict["ok"] else verdict["detail"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| model | scheme | group | KLD mean | KLD p99 | top-1 | PPL ratio | default limits |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        m = r["measures"]
        print(
            f"| {r['model']} | {r['scheme']} | {r['group_size']} | {m['kld_mean']:.4f} | "
            f"{m['kld_p99']:.4f} | {m['top1_agreement']:.3f} | {m['ppl_ratio']:.4f} | "
            f"{r['default_limits']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
