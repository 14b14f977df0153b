"""Ray executor benchmark: speed-up of N units on a 2-worker local Ray cluster over the local
executor, and Ray's overhead per unit.

    .venv/bin/python bench/ray_units.py                 # synthetic units + real gate units
    .venv/bin/python bench/ray_units.py --only synthetic --units 8
    .venv/bin/python bench/ray_units.py --only quantize --quant-types Q8_0,Q4_K_M --quant-awq

The cluster is ray.cluster_utils.Cluster: two nodes of one CPU each on this machine (small
object stores, no dashboard), what the tests use. Three figures:

* synthetic: N CPU-bound units of ~`--unit-s` seconds each (pure Python, no imports), local
  executor (one after the other) vs the 2-worker cluster: the executor's own scaling;
* overhead: N no-op units through Ray (warm workers) vs in process: Ray's cost per unit;
* gate: the real gate (lm-eval on tiny llama models, one unit per model x task) with
  `--executor local` vs `--executor ray`, `--no-cache` both: each Ray worker imports torch and
  lm-eval and loads its model itself, where the local executor does that once per model;
* quantize: the real quantize step (llama.cpp on a tiny llama, one unit per GGUF type after
  one conversion) with `--executor local` vs `--executor ray`, `--threads 1` (one CPU per unit,
  what one node of this cluster has), `--force` both; the quant records must be identical.

Run on a shared machine the figures move with the load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' import root, as pytest has it


def busy(seconds: float, state: dict[str, Any]) -> int:
    """A CPU-bound unit: count until `seconds` of this process's CPU time are spent."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def noop(payload: Any, state: dict[str, Any]) -> Any:
    return payload


def _units(fn: Any, payloads: list[Any]) -> list[Any]:
    from medrelease.executors import Resources, Unit

    return [Unit(f"u{i}", f"unit {i}", fn, p, Resources(1, 0, 0)) for i, p in enumerate(payloads)]


def _timed(executor: Any, units: list[Any]) -> float:
    from medrelease.core.console import Reporter

    start = time.perf_counter()
    for _ in executor.run(units, Reporter(quiet=True)):
        pass
    return time.perf_counter() - start


def control(n: int, unit_s: float) -> dict[str, Any]:
    """The same units with plain multiprocessing (2 processes, no Ray): what this machine gives
    two processes at all. On a loaded shared machine it can be no speed-up."""
    import multiprocessing as mp

    start = time.perf_counter()
    for _ in range(n):
        busy(unit_s, {})
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        pool.starmap(busy, [(unit_s, {})] * n)
    parallel = time.perf_counter() - start
    return {"serial_s": round(serial, 2), "pool_2_s": round(parallel, 2),
            "speedup": round(serial / parallel, 2)}  # fmt: skip


def synthetic(address: str, n: int, unit_s: float, n_noop: int) -> dict[str, Any]:
    from medrelease.executors import make_executor

    local = make_executor("local")
    t_local = _timed(local, _units(busy, [unit_s] * n))
    ray_ex = make_executor("ray", address=address)
    try:
        _timed(ray_ex, _units(noop, [0, 1]))  # start the workers once (not the figure)
        t_ray = _timed(ray_ex, _units(busy, [unit_s] * n))
        noops = [_timed(ray_ex, _units(noop, list(range(n_noop)))) for _ in range(3)]
    finally:
        ray_ex.close()
    t_noop_local = _timed(local, _units(noop, list(range(n_noop))))
    per_unit = (statistics.median(noops) - t_noop_local) / n_noop
    return {
        "units": n,
        "unit_cpu_s": unit_s,
        "local_s": round(t_local, 2),
        "ray_2_workers_s": round(t_ray, 2),
        "speedup": round(t_local / t_ray, 2),
        "noop_units": n_noop,
        "ray_overhead_per_unit_ms": round(per_unit * 1000, 1),
    }


def gate(address: str, tasks: int, limit: int, work: Path) -> dict[str, Any]:
    from gate.gatehelpers import gate_recipe, write_demo_task
    from medrelease.gate.step import gate_release
    from medrelease.testing.tiny import TinySpec, build_tiny_model, derive_stage
    from releases import built_release

    base = build_tiny_model(work / "base", TinySpec(seed=1))
    fam = {"base": base, "sft": derive_stage(base, work / "sft", seed=101),
           "dpo": derive_stage(base, work / "dpo", seed=102)}  # fmt: skip
    write_demo_task(work / "tasks")
    # distinct limits: distinct units (the cache key holds the settings)
    gates = {"baselines": ["base"], "batch_size": 4, "device": "cpu",
             "tasks": [{"name": f"mcq{i}", "task_yaml": "tasks/demo_mcq.yaml", "limit": limit - i}
                       for i in range(tasks)],
             "rules": [{"metric": "mcq0/acc", "min": 0.0}]}  # fmt: skip
    cand = derive_stage(base, work / "cand", seed=7, scale=0.5)
    built = built_release(work, "merge", gate_recipe(fam, gates), merged=cand)
    workdir, loaded = built.workdir, built.load()
    gate_release(loaded, workdir=workdir)  # warm: imports, OS caches, task files
    out: dict[str, Any] = {"units": 2 * tasks, "limit": limit}
    reports = {}
    for name in ("local", "ray"):
        start = time.perf_counter()
        res = gate_release(
            loaded, workdir=workdir, use_cache=False, executor=name, ray_address=address
        )
        out[f"{name}_s"] = round(time.perf_counter() - start, 2)
        reports[name] = res.report
    out["speedup"] = round(out["local_s"] / out["ray_s"], 2)
    out["same_report"] = json.dumps(reports["local"]) == json.dumps(reports["ray"])
    return out


def quantize(address: str, types: list[str], awq: bool, work: Path) -> dict[str, Any]:
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release
    from medrelease.testing.tiny import TinySpec, build_tiny_model
    from quantize.quanthelpers import quant_release

    base = build_tiny_model(work / "base", TinySpec(seed=1))
    workdir = work / "build"
    # every quant optional: this measures where the units run, and a rejection (a random
    # stand-in) must not stop it (quantize/verdict.py)
    section: dict[str, Any] = {"gguf": {"types": types, "optional": types}}
    if awq:  # a short calibration: the unit is still the real llm-compressor run and checks
        section["awq"] = {"num_samples": 8, "max_seq_length": 64, "optional": True}
    loaded = load_recipe(quant_release(workdir, base, section).recipe)

    def run(executor: str) -> dict[str, Any]:
        return quantize_release(
            loaded,
            workdir=workdir,
            force=True,
            threads=1,
            executor=executor,
            ray_address=address,
            reporter=Reporter(quiet=True),
        ).record

    run("local")  # warm: imports, OS caches
    out: dict[str, Any] = {"units": len(types) + awq, "types": types, "awq": awq}
    records = {}
    for name in ("local", "ray"):
        start = time.perf_counter()
        records[name] = run(name)
        out[f"{name}_s"] = round(time.perf_counter() - start, 2)
        out[f"{name}_phases_s"] = records[name]["timings"]["phases_s"]
    out["speedup"] = round(out["local_s"] / out["ray_s"], 2)
    # each unit's own work (quantize + checks), without the worker's start and imports
    for name in ("local", "ray"):
        quants = records[name]["timings"]["quants_s"]
        out[f"{name}_units_s"] = {
            k: round(v.get("build", 0) + v.get("check", 0), 2) for k, v in quants.items()
        }
    out["same_quants"] = json.dumps(records["local"]["quants"]) == json.dumps(
        records["ray"]["quants"]
    )
    out["accepted"] = [q["type"] for q in records["ray"]["quants"] if q["accepted"]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="synthetic,gate,quantize", help="synthetic,gate,quantize")
    ap.add_argument("--units", type=int, default=8, help="synthetic CPU-bound units")
    ap.add_argument("--unit-s", type=float, default=2.0, help="CPU seconds per synthetic unit")
    ap.add_argument("--noop-units", type=int, default=50)
    ap.add_argument("--gate-tasks", type=int, default=3, help="tasks per model (2 models)")
    ap.add_argument("--gate-limit", type=int, default=12)
    ap.add_argument("--quant-types", default="Q8_0,Q4_0,Q4_K_M,Q5_K_M", help="GGUF types")
    ap.add_argument("--quant-awq", action="store_true", help="add an AWQ unit (llm-compressor)")
    args = ap.parse_args(argv)

    os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm
    import ray
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    from medrelease.core.quiet import quiet_libraries

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    quiet_libraries()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import bench/
    results: dict[str, Any] = {"load_avg_before": os.getloadavg(), "cpus": os.cpu_count()}
    store = 100 * 2**20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": store, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        only = set(args.only.split(","))
        if "synthetic" in only:
            results["control_multiprocessing"] = control(args.units, args.unit_s)
            results["synthetic"] = synthetic(
                cluster.address, args.units, args.unit_s, args.noop_units
            )
        if "gate" in only:
            with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
                results["gate"] = gate(cluster.address, args.gate_tasks, args.gate_limit, Path(tmp))
        if "quantize" in only:
            types = args.quant_types.split(",")
            with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
                results["quantize"] = quantize(cluster.address, types, args.quant_awq, Path(tmp))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    results["load_avg_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
