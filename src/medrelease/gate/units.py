"""The gate's units of work: one model x one task x settings, each cached under its own key.

`EvalUnit` is what an executor ships to where the unit runs (this process, or a Ray worker);
`gate.step.evaluate_unit` runs it. `unit_resources` is what a unit reserves on a cluster node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.executors import Resources
from medrelease.gate.tasks import ResolvedTask

GIB = 2**30


@dataclass
class EvalUnit:
    """Everything a worker needs to evaluate one model on one task (picklable)."""

    model_name: str
    model_path: Path
    task: ResolvedTask
    backend: str
    model_args: dict[str, Any]
    batch_size: Any
    device: str
    dtype: dict[str, Any] | None = None  # the gate-wide eval dtype choice, when there is one


def _weights_bytes(folder: Path) -> int:
    return sum(
        p.stat().st_size
        for p in folder.iterdir()
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".gguf")
    )


def unit_resources(
    backend: str, device: str, model_args: dict[str, Any], model_path: Path
) -> Resources:
    """What one unit reserves on a node.

    GPUs: vLLM holds `tensor_parallel_size` of them; the hf backend one on CUDA. Memory, a
    scheduling estimate: the weights, twice on CPU (a bf16 checkpoint evaluated in float32),
    plus 1 GiB for lm-eval, the tokenizer and the task data."""
    on_gpu = device.startswith("cuda") or backend == "vllm"
    if backend == "vllm":
        if int(model_args.get("data_parallel_size", 1)) > 1:
            raise RecipeError(
                "gates.model_args.data_parallel_size > 1 does not combine with --executor ray",
                hint="with the Ray executor every unit is already a Ray task spread over the "
                "cluster's GPUs (lm-eval's data parallelism starts its own Ray actors and shuts "
                "Ray down inside the worker): set data_parallel_size: 1, or use --executor local",
            )
        gpus = float(model_args.get("tensor_parallel_size", 1))
    else:
        gpus = 1.0 if on_gpu else 0.0
    weights = _weights_bytes(model_path) if model_path.is_dir() else 0
    memory = int(weights * (1 if on_gpu else 2) + GIB)
    return Resources(num_cpus=1.0, num_gpus=gpus, memory=memory)
