"""Real size, the gate: a Qwen3-4B-shaped model on MMLU professional_medicine, 5-shot.

    .venv/bin/python bench/real_size_gate.py --scale 0.25 --layers 4 --limit 8   # minutes
    .venv/bin/python bench/real_size_gate.py                                     # 4B: hours
    (also `bench/real_size.py --gate ...`)

Shape at scale 1: Qwen3-4B (hidden 2560, 36 layers, intermediate 9728, 32 heads / 8 KV heads
of 128, vocabulary 151,936, tied embeddings, bf16: 4.0B parameters, 8 GB). `--scale`
multiplies the hidden and intermediate sizes (heads of 128 kept); the vocabulary stays
151,936 at every scale, because the full-vocabulary log-probabilities are what this measures.
`--layers` overrides the layer count. Weights are random (seeded); the tokenizer is
medrelease's tiny SentencePiece one, which splits text into ~2x more tokens than Qwen's, so
the prompts are longer than a real Qwen3's (a conservative memory measure).

The data: MMLU professional_medicine in lm-eval's own task (`mmlu_professional_medicine`,
5-shot, first_n sampler), over local files with the shape of the real subject (clinical
vignettes of `--question-chars` characters, 1,100 by default, about the subject's mean).
The task YAML is lm-eval's, pointed at the files, used by both routes.

Measured, one after the other, each in a fresh process (wall time, peak RSS of the process
tree, bench/child_stats.py):
  ours:  `medrelease gate` (the hf backend as medrelease runs it: LM head at scored positions)
  stock: lm-eval's own hf backend (`simple_evaluate(model="hf")`) with the same choices
         (batch size, dtype, few-shot, limit): the route before this change
and the two results must agree to 1e-6 (acc and its stderr). Prints a markdown table;
`--out` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from measure import Run, run_measured
from synthetic import tokenizer_folder

VENV_BIN = Path(sys.executable).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
QWEN3_4B = {"hidden": 2560, "layers": 36, "intermediate": 9728, "vocab": 151936, "heads": 32,
            "kv_heads": 8, "head_dim": 128}  # fmt: skip
GIB = 2**30
TASK = "mmlu_professional_medicine"

STOCK = """
import json, sys, lm_eval
from lm_eval.tasks import TaskManager
tasks_dir, model, dtype, batch, limit, out = sys.argv[1:7]
res = lm_eval.simple_evaluate(
    model="hf", model_args=f"pretrained={model},dtype={dtype}", tasks=["TASK"],
    task_manager=TaskManager(include_path=[tasks_dir], include_defaults=False),
    num_fewshot=5, batch_size=int(batch), device="cpu", limit=int(limit))
open(out, "w").write(json.dumps(res["results"]["TASK"], default=str))
""".replace("TASK", TASK)


def shape(scale: float, layers: int | None) -> dict[str, int]:
    hd = QWEN3_4B["head_dim"]
    heads = max(2, round(QWEN3_4B["heads"] * scale))
    heads -= heads % 2
    kv = max(1, heads // 4)  # Qwen3-4B's 4:1 grouping
    return {
        "hidden": round(QWEN3_4B["hidden"] * scale / 128) * 128 or 128,
        "layers": layers or QWEN3_4B["layers"],
        "intermediate": max(256, round(QWEN3_4B["intermediate"] * scale / 256) * 256),
        "vocab": QWEN3_4B["vocab"],
        "heads": heads,
        "kv_heads": kv,
        "head_dim": hd,
    }


def n_params(s: dict[str, int]) -> int:
    h, i, hd = s["hidden"], s["intermediate"], s["head_dim"]
    attn = h * s["heads"] * hd * 2 + 2 * h * s["kv_heads"] * hd + 2 * hd
    layer = attn + 3 * h * i + 2 * h
    return s["layers"] * layer + s["vocab"] * h + h  # tied head


def build_model(folder: Path, s: dict[str, int], tokenizer: Path, seed: int = 0) -> Path:
    """Random bf16 Qwen3 weights (one safetensors file per ~2 GB) with the tiny tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    if (folder / "config.json").is_file():
        return folder
    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    cfg = Qwen3Config(
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        intermediate_size=s["intermediate"],
        vocab_size=s["vocab"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        head_dim=s["head_dim"],
        tie_word_embeddings=True,
        max_position_embeddings=40960,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.to_empty(device="cpu")
    with torch.no_grad():  # small random weights: finite logits through every layer
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.ndim == 2 else p.fill_(1.0)
    model.save_pretrained(str(tmp), max_shard_size="2GB")
    tok.save_pretrained(str(tmp))
    tmp.rename(folder)
    return folder


def write_task(folder: Path, n_test: int, question_chars: int, seed: int = 0) -> Path:
    """lm-eval's mmlu_professional_medicine YAML over local files of vignette-length items."""
    from medrelease.gate.presets import lm_eval_tasks_dir
    from medrelease.testing.corpus import text

    rng = random.Random(seed)
    words = text(400, seed=seed).split()

    def item(i: int) -> dict[str, Any]:
        text, n = [f"A {30 + i % 50}-year-old patient presents to the clinic."], 0
        while sum(len(t) + 1 for t in text) < question_chars:
            n = rng.randrange(len(words) - 30)
            text.append(" ".join(words[n : n + 20]).capitalize() + ".")
        choices = [" ".join(rng.sample(words, 4)) for _ in range(4)]
        body = textwrap.shorten(" ".join(text), question_chars, placeholder="")
        question = body + " Which of the following is the most likely diagnosis?"
        return {"question": question, "choices": choices, "answer": i % 4, "subject": "pm"}

    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("test", n_test), ("dev", 5)):
        with (folder / f"{split}.jsonl").open("w") as fh:
            for i in range(n):
                fh.write(json.dumps(item(i + (1000 if split == "dev" else 0))) + "\n")
    cfg = {
        "include": str(lm_eval_tasks_dir() / "mmlu" / "default" / f"{TASK}.yaml"),
        "task": TASK,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {k: str(folder / f"{k}.jsonl") for k in ("test", "dev")}},
    }
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def measured(label: str, cmd: list[str], cwd: Path | None = None) -> Run:
    print(f"  {label} ...", flush=True)
    run = run_measured(cmd, env=OFFLINE, cwd=cwd)
    rss = f"peak RSS {run.max_rss_mib:.0f} MiB (process tree {run.tree_rss_mib:.0f} MiB)"
    print(f"  {label}: {run.wall_s:.1f} s, {rss}, exit {run.returncode}", flush=True)
    if run.returncode not in (0, 4):  # 4: a rule failed; the run itself is what is measured
        raise SystemExit(f"{label} failed (exit {run.returncode})")
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="of Qwen3-4B's widths (default 1)")
    ap.add_argument("--layers", type=int, help="layer count (default: Qwen3-4B's 36)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--limit", type=int, default=8, help="test questions (default 8)")
    ap.add_argument("--question-chars", type=int, default=1100)
    ap.add_argument("--no-stock", action="store_true", help="measure medrelease's route only")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mr-bench-real-size-gate"))
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the built model for a re-run")
    args = ap.parse_args(argv)
    s = shape(args.scale, args.layers)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"shape: {s} -> {n_params(s) / 1e9:.3f}B params, bf16", flush=True)
    t0 = time.perf_counter()
    tag = "-".join(str(v) for v in s.values())
    model = build_model(work / f"model-{tag}", s, tokenizer_folder(work / "cache"))
    print(f"model built in {time.perf_counter() - t0:.0f} s", flush=True)
    tasks = write_task(work / "tasks", args.limit, args.question_chars)
    wd = work / "wd"
    shutil.rmtree(wd, ignore_errors=True)
    merged = wd / "real-size-gate" / "merged"
    merged.parent.mkdir(parents=True)
    merged.symlink_to(model, target_is_directory=True)  # the gate reads <workdir>/<name>/merged
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "release": {"name": "real-size-gate", "version": "0.1.0", "repo": "bench/real-size-gate",
                    "license": "apache-2.0"},
        "stages": {"base": str(model)},
        "merge": {"merge_method": "linear", "models": [{"model": "base"}], "dtype": "bfloat16"},
        "gates": {"device": "cpu", "batch_size": args.batch_size, "tasks": [
            {"name": "pro_med", "task_yaml": str(tasks / f"{TASK}.yaml"), "num_fewshot": 5,
             "limit": args.limit}],
            "rules": [{"metric": "pro_med/acc", "min": 0.0}]},
    }, sort_keys=False))  # fmt: skip
    fig: dict[str, Any] = {"shape": s, "params": n_params(s), "scale": args.scale,
                           "batch_size": args.batch_size, "limit": args.limit}  # fmt: skip

    ours = measured("medrelease gate", [str(VENV_BIN / "medrelease"), "gate", str(recipe),
                                        "--workdir", str(wd), "--no-cache"])  # fmt: skip
    report = json.loads((wd / "real-size-gate" / "gates" / "report.json").read_text())
    acc = next(m for m in report["metrics"] if m["metric"] == "pro_med/acc")
    fig["ours"] = {"wall_s": ours.wall_s, "rss_mib": ours.max_rss_mib,
                   "tree_rss_mib": ours.tree_rss_mib, "acc": acc["values"]["merged"],
                   "acc_stderr": acc["stderr"]["merged"], "dtype": report["harness"]["dtype"],
                   "dtype_reason": report["harness"]["dtype_reason"]}  # fmt: skip
    rows = [("medrelease gate", ours)]
    if not args.no_stock:
        out = work / "stock.json"
        dtype = report["harness"]["dtype"] or "auto"
        cmd = [sys.executable, "-c", STOCK, str(tasks), str(model), dtype]
        stock = measured(
            "lm-eval hf (stock)", [*cmd, str(args.batch_size), str(args.limit), str(out)]
        )
        res = json.loads(out.read_text())
        fig["stock"] = {"wall_s": stock.wall_s, "rss_mib": stock.max_rss_mib,
                        "tree_rss_mib": stock.tree_rss_mib, "acc": res["acc,none"],
                        "acc_stderr": res["acc_stderr,none"], "dtype": dtype}  # fmt: skip
        fig["equal_1e-6"] = (
            abs(fig["ours"]["acc"] - res["acc,none"]) <= 1e-6
            and abs(fig["ours"]["acc_stderr"] - float(res["acc_stderr,none"])) <= 1e-6
        )
        rows.append(("lm-eval hf (stock)", stock))
    print()
    print("| route | wall | peak RSS | process tree peak RSS | acc |")
    print("|---|---:|---:|---:|---:|")
    for (name, r), key in zip(rows, ("ours", "stock"), strict=False):
        print(f"| {name} | {r.wall_s:.1f} s | {r.max_rss_mib / 1024:.2f} GiB | "
              f"{r.tree_rss_mib / 1024:.2f} GiB | {fig[key]['acc']:.4f} |")  # fmt: skip
    if "stock" in fig:
        print(
            f"  equal to 1e-6: {fig['equal_1e-6']}; "
            f"time ratio {ours.wall_s / rows[1][1].wall_s:.2f}x, "
            f"RSS ratio {ours.tree_rss_mib / max(rows[1][1].tree_rss_mib, 1):.2f}x"
        )
    print(f"  gate dtype: {fig['ours']['dtype']} ({fig['ours']['dtype_reason']})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(fig, indent=1) + "\n")
    shutil.rmtree(wd, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work / f"model-{tag}", ignore_errors=True)
    return 0 if fig.get("equal_1e-6", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
