"""The GPU path, checked against the CPU: run by bench/gpu_check.sh on a 1xH100 machine.

Every GPU number is compared with the same run on the CPU (CUDA_VISIBLE_DEVICES hidden), on
the same machine, within the tolerances below (docs/cluster.md, "GPU readiness", says why):

1. the gate, lm-eval's hf backend: CPU float32 vs CUDA float32;
2. the gate, `gates.backend: vllm` (float32) vs the CPU run;
3. `medrelease quantize` with the AWQ scheme (llm-compressor calibrates on the GPU when one is
   visible) vs the same command on the CPU: the AWQ quant's measures against the reference;
4. the quant reference (the merged model's logits on the held-out chunks, as
   quantize/reference.py computes them) on CUDA vs on the CPU.

The model: a real small one, SmolLM2-135M-Instruct (testing/realmodels.py: needs PyPI once,
or `--model DIR` with the prepared folder), merged with a copy of itself (linear 0.5/0.5:
the merge is the model; mergekit refuses one folder twice), gated on the real MMLU medical
items of tests/real/data/mmlu.

    python bench/gpu_check.py --work /tmp/mr-gpu [--model DIR] [--skip-vllm]

Exit 0 when every check ran and held; 1 when one differs beyond its tolerance; 3 when the
machine has no CUDA device. Writes `<work>/gpu_check.json` with every number.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MMLU = ROOT / "tests" / "real" / "data" / "mmlu"
NAME = "gpu-check"

# Tolerances (absolute). The gate's metrics are accuracies over 24 items: a log-likelihood
# near a tie may flip between kernels, so one item either way (1/24 = 0.042) is allowed per
# subject-level metric and half of that on the aggregate. vLLM computes prompt log-probs with
# its own kernels and batching: the same allowance.
GATE_TOL = {"aggregate": 0.021, "subject": 0.26}  # subjects have 4 items: one flip = 0.25
# AWQ: calibration on the GPU accumulates activation statistics in another order (and
# llm-compressor may use TF32 there): the quant differs slightly; its measures against the
# reference must stay close to the CPU quant's.
AWQ_TOL = {"kld_mean": 0.02, "top1_agreement": 0.02, "ppl_ratio": 0.02}
# The reference, float32 on both: per-token log-probabilities.
REF_TOL = {"max_abs_logprob": 2e-3, "kld_mean": 1e-6, "top1_agreement_min": 0.999}


def sh(cmd: list[str], *, gpu: bool, log: Path) -> float:
    env = dict(os.environ)
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    print(f"  {' '.join(cmd[1:3])} ({'GPU' if gpu else 'CPU'}): exit {proc.returncode}, "
          f"{wall:.0f} s (log: {log})", flush=True)  # fmt: skip
    if proc.returncode != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"{cmd[1]} failed on the {'GPU' if gpu else 'CPU'}")
    return wall


class GpuMemory:
    """Peak GPU memory in use while a child runs (nvidia-smi, every 0.5 s): proof it ran there."""

    def __init__(self) -> None:
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if out:
                self.peak_mib = max(self.peak_mib, int(out[0]))
            time.sleep(0.5)

    def __enter__(self) -> GpuMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def write_mmlu(data_dir: Path) -> None:
    """tests/real/data/mmlu in the mmlu_medical preset's layout (as the real tier does)."""
    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS

    for subject in MMLU_MEDICAL_SUBJECTS:
        folder = data_dir / "mmlu_medical" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("test", "dev"):
            with (MMLU / f"{subject}_{split}.csv").open(newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
            with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                for q, a, b, c, d, letter in rows:
                    row = {"question": q, "subject": subject, "choices": [a, b, c, d]}
                    out.write(json.dumps({**row, "answer": "ABCD".index(letter)}) + "\n")


def twin(work: Path, model: Path) -> Path:
    """A copy of the model under another path: mergekit refuses one folder merged twice."""
    copy = work / "model-twin"
    if not copy.exists():
        shutil.copytree(model, copy)
    return copy


def recipe(work: Path, key: str, model: Path, gates: dict[str, Any], quantize: bool) -> Path:
    import yaml

    body: dict[str, Any] = {
        "release": {"name": NAME, "version": "0.1.0", "repo": "bench/gpu-check",
                    "license": "apache-2.0"},
        "stages": {"a": str(model), "b": str(twin(work, model))},
        "merge": {"merge_method": "linear", "models": [
            {"model": "a", "parameters": {"weight": 0.5}},
            {"model": "b", "parameters": {"weight": 0.5}}], "dtype": "bfloat16"},
        "gates": {"data_dir": str(work / "eval-data"), "batch_size": 8,
                  "tasks": [{"preset": "mmlu_medical", "num_fewshot": 0}],
                  "rules": [{"metric": "mmlu_medical/acc", "min": 0.0}], **gates},
    }  # fmt: skip
    if quantize:  # AWQ only (the GGUF path is llama.cpp on the CPU either way)
        body["quantize"] = {"awq": {"num_samples": 32, "max_seq_length": 256}}
    path = work / f"recipe-{key}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def gate_values(report: Path) -> dict[str, float]:
    rep = json.loads(report.read_text())
    return {m["metric"]: m["values"]["merged"] for m in rep["metrics"]}


def compare_gate(cpu: dict[str, float], other: dict[str, float]) -> dict[str, Any]:
    worst = {"aggregate": 0.0, "subject": 0.0}
    for metric, value in cpu.items():
        kind = "subject" if metric.count("/") == 2 else "aggregate"
        worst[kind] = max(worst[kind], abs(other[metric] - value))
    ok = all(worst[k] <= GATE_TOL[k] for k in worst)
    return {"max_abs_diff": worst, "tolerance": GATE_TOL, "ok": ok, "values": other}


def awq_measures(workdir: Path) -> dict[str, Any]:
    manifest = json.loads((workdir / NAME / "manifest.json").read_text())
    for q in manifest["steps"]["quantize"]["quants"]:
        if q["family"] == "awq":
            return dict((q["checks"].get("logits") or {}).get("measures") or {})
    raise SystemExit("the quantize manifest has no AWQ quant")


def reference_check(merged: Path, device: str = "cuda") -> dict[str, Any]:
    """The reference logits as quantize/reference.py computes them, CPU vs CUDA (float32)."""
    import types

    import torch
    from medrelease.quantize.checks import (
        bos_added,
        chunk_context,
        held_out_chunks,
        held_out_ids,
        hf_logits,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.texts import load_text

    tok = AutoTokenizer.from_pretrained(str(merged))
    config = json.loads((merged / "config.json").read_text())
    ids = held_out_ids(tok, load_text("heldout", "default", merged).text)
    chunks = held_out_chunks(ids, chunk_context(config, 512), 2048, bos_added(tok, ids))
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    t0 = time.perf_counter()
    cpu = hf_logits(model, chunks)
    cpu_s = time.perf_counter() - t0
    model.to(device)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here

    class OnDevice:  # hf_logits feeds CPU tensors and reads numpy: move both ways
        def forward(self, input_ids: Any, logits_to_keep: int = 0) -> Any:
            out = model(input_ids.to(device), logits_to_keep=logits_to_keep)
            return types.SimpleNamespace(logits=out.logits.cpu())

        __call__ = forward

    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu = hf_logits(OnDevice(), chunks)
    gpu_s = time.perf_counter() - t0
    a = torch.log_softmax(torch.cat([torch.from_numpy(x) for x in cpu]).double(), -1)
    b = torch.log_softmax(torch.cat([torch.from_numpy(x) for x in gpu]).double(), -1)
    kld = (a.exp() * (a - b)).sum(-1)
    out = {
        "tokens": int(a.shape[0]),
        "max_abs_logprob": float((a - b).abs().max()),
        "kld_mean": float(kld.mean()),
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).double().mean()),
        "cpu_s": cpu_s,
        "gpu_s": gpu_s,
        "tolerance": REF_TOL,
    }
    out["ok"] = (
        out["max_abs_logprob"] <= REF_TOL["max_abs_logprob"]
        and out["kld_mean"] <= REF_TOL["kld_mean"]
        and out["top1_agreement"] >= REF_TOL["top1_agreement_min"]
    )
    return out


def dry_run(work: Path, recipes: dict[str, Path], model: Path) -> int:
    """Without a GPU: validate every recipe, run the CPU merge, gate and quantize, and the
    reference comparison CPU against CPU (its numbers are then exactly equal)."""
    cli = str(Path(sys.executable).parent / "medrelease")
    for key, path in recipes.items():
        sh([cli, "validate", str(path)], gpu=False, log=work / f"validate-{key}.log")
    wd = work / "build"
    sh([cli, "merge", str(recipes["cpu"]), "--workdir", str(wd)], gpu=False, log=work / "m.log")
    sh([cli, "gate", str(recipes["cpu"]), "--workdir", str(wd)], gpu=False, log=work / "g.log")
    values = gate_values(wd / NAME / "gates" / "report.json")
    assert compare_gate(values, values)["ok"]
    sh([cli, "quantize", str(recipes["cpu"]), "--workdir", str(wd)], gpu=False,
       log=work / "q.log")  # fmt: skip
    print("AWQ measures:", awq_measures(wd))
    print("reference CPU vs CPU:", reference_check(wd / NAME / "merged", device="cpu"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mr-gpu-check"))
    ap.add_argument("--model", type=Path, help="a prepared HF folder (default: SmolLM2-135M)")
    ap.add_argument("--skip-vllm", action="store_true", help="no vLLM in this environment")
    ap.add_argument(
        "--dry-run", action="store_true", help="no GPU: the CPU half of every step (the script)"
    )
    args = ap.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device visible: this check needs a GPU machine", file=sys.stderr)
        return 3
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write_mmlu(work / "eval-data")
    if args.model:
        model = args.model
    elif args.dry_run:  # a tiny llama built here: the plumbing, not the numbers
        from medrelease.testing.tiny import TinySpec, build_tiny_model

        model = build_tiny_model(work / "model", TinySpec(arch="llama", seed=1))
    else:
        from medrelease.testing.realmodels import real_model

        model = Path(real_model("smollm2-135m"))
    f32 = {"dtype": "float32"}
    plans = {
        "cpu": ({"device": "cpu", "model_args": f32}, False),
        "cuda": ({"device": "cuda", "model_args": f32}, True),
        "vllm": ({"device": "cuda", "backend": "vllm", "model_args": {
            **f32, "gpu_memory_utilization": 0.4, "max_model_len": 2048,
            "enforce_eager": True, "seed": 0}}, True),
    }  # fmt: skip
    recipes = {k: recipe(work, k, model, g, quantize=(k == "cpu")) for k, (g, _) in plans.items()}
    if args.dry_run:  # the CPU half only, on this machine: every path but the GPU's
        return dry_run(work, recipes, model)
    cli = str(Path(sys.executable).parent / "medrelease")
    fig: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "model": str(model)}
    wd = work / "build"
    print("merge (CPU)", flush=True)
    sh([cli, "merge", str(recipes["cpu"]), "--workdir", str(wd)], gpu=False, log=work / "merge.log")
    merged = wd / NAME / "merged"
    reports: dict[str, dict[str, float]] = {}
    for key, (_, gpu) in plans.items():
        if key == "vllm" and args.skip_vllm:
            fig["vllm"] = {"ok": False, "skipped": "--skip-vllm"}
            continue
        print(f"gate: {key}", flush=True)
        with GpuMemory() as mem:
            wall = sh([cli, "gate", str(recipes[key]), "--workdir", str(wd), "--no-cache"],
                      gpu=gpu, log=work / f"gate-{key}.log")  # fmt: skip
        shutil.copy(wd / NAME / "gates" / "report.json", work / f"report-{key}.json")
        reports[key] = gate_values(work / f"report-{key}.json")
        fig[f"gate_{key}"] = {"wall_s": wall, "gpu_peak_mib": mem.peak_mib}
    for key in ("cuda", "vllm"):
        if key in reports:
            fig[f"gate_{key}"].update(compare_gate(reports["cpu"], reports[key]))
    fig["gate_cpu"]["values"] = reports["cpu"]

    print("quantize, AWQ: CPU then GPU", flush=True)
    awq: dict[str, Any] = {}
    for key, gpu in (("cpu", False), ("gpu", True)):
        shutil.rmtree(wd / NAME / "quant", ignore_errors=True)
        with GpuMemory() as mem:
            wall = sh([cli, "quantize", str(recipes["cpu"]), "--workdir", str(wd), "--force"],
                      gpu=gpu, log=work / f"quantize-{key}.log")  # fmt: skip
        awq[key] = {"wall_s": wall, "gpu_peak_mib": mem.peak_mib, **awq_measures(wd)}
    diffs = {k: abs(float(awq["gpu"][k]) - float(awq["cpu"][k])) for k in AWQ_TOL}
    awq["max_abs_diff"], awq["tolerance"] = diffs, AWQ_TOL
    # the GPU run must have used the GPU (more than the CUDA context's few hundred MiB)
    awq["ran_on_gpu"] = awq["gpu"]["gpu_peak_mib"] > 1024
    awq["ok"] = all(diffs[k] <= AWQ_TOL[k] for k in AWQ_TOL) and awq["ran_on_gpu"]
    fig["awq"] = awq

    print("quant reference: CPU vs CUDA", flush=True)
    fig["reference"] = reference_check(merged)

    (work / "gpu_check.json").write_text(json.dumps(fig, indent=1, default=str) + "\n")
    print(json.dumps(fig, indent=1, default=str))
    checks = {k: fig[k]["ok"] for k in ("gate_cuda", "gate_vllm", "awq", "reference")
              if k in fig}  # fmt: skip
    checks.setdefault("gate_vllm", False)
    print("\nGPU check: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
