"""Which dtype to run a transformers forward pass in: one rule for the gate and the quant checks.

A bf16 checkpoint evaluated as bf16 on a CPU without fast bf16 kernels is slow (measured on the
project's 2-core machine: 41.9 s in bf16 vs 15.5 s in float32 for the same input), while a
float32 copy of a 7B model (28 GB) does not fit a 24 GiB machine at all. So:

- a float32 model, or any model on an accelerator: its own dtype;
- on CPU, float32 when the float32 weights fit comfortably (< half of MemAvailable, counting
  every model that will be resident at once) and the CPU has no fast path for the model's
  half-precision dtype;
- where the caller can run a model layer by layer (`per_layer=True`: core/upcast.py) and only
  the half-precision weights fit, float32 compute with the weights kept in their own dtype:
  the same numbers as a float32 copy at the memory of the half one (a 7B model on 24 GiB);
- otherwise the model's own dtype.

"Fast path" means matrix hardware (AMX) for that dtype. AVX512-BF16 alone is not counted: the
machine the 2.7x slowdown was measured on has it, and torch's other CPU ops (norms, softmax,
attention) still convert every bf16 tensor. `MEDRELEASE_CPU_FAST_BF16=1|0` overrides the
detection. No torch import here (the CLI imports this module at start-up through the steps).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.safetensors_header import DTYPE_BYTES, safetensors_headers

FLOAT32 = "float32"
HALF_DTYPES = {"bfloat16", "float16"}
ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
# share of MemAvailable a float32 copy may take: the rest is for activations, logits, tokenizer,
# llama.cpp running alongside, and the OS page cache that keeps reading the weights cheap
MEMORY_SHARE = 0.5
# share of MemAvailable the half-precision weights may take when computing layer by layer: the
# rest holds one module's float32 copy (the LM head, ~2 GiB at 7B), activations and logits
PER_LAYER_SHARE = 0.8
# CPU flags that make a half dtype at least as fast as float32 in torch on CPU
FAST_FLAGS = {"bfloat16": ("amx_bf16",), "float16": ("amx_fp16",)}
ENV_OVERRIDE = "MEDRELEASE_CPU_FAST_BF16"


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # a torch dtype name: float32, bfloat16, float16
    reason: str  # one line for the report and the card
    # float32 compute over weights kept in their half dtype, module by module (core/upcast.py)
    per_layer: bool = False
    # ... with the weights not even loaded: each module reads its own from disk as it runs
    streamed: bool = False

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"dtype": self.dtype, "reason": self.reason}
        if self.per_layer:
            rec["per_layer"] = True  # the caller loads the half weights and upcasts per module
        return rec


@dataclass(frozen=True)
class WeightsInfo:
    n_params: int
    dtype: str  # the checkpoint's floating-point dtype (most weight bytes)


def weights_info(folder: Path) -> WeightsInfo:
    """Parameter count and dtype from the safetensors headers (no tensor is read)."""
    counts: dict[str, int] = {}
    for header in safetensors_headers(folder).values():
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for d in entry["shape"]:
                n *= int(d)
            counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + n
    if not counts:
        return WeightsInfo(0, _config_dtype(folder) or FLOAT32)
    floats = {k: v for k, v in counts.items() if k in ST_DTYPES}
    main = max(floats or counts, key=lambda k: (floats or counts)[k] * DTYPE_BYTES.get(k, 1))
    return WeightsInfo(sum(counts.values()), ST_DTYPES.get(main, _config_dtype(folder) or FLOAT32))


def _config_dtype(folder: Path) -> str | None:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = cfg.get("dtype") or cfg.get("torch_dtype")
    return str(value) if value else None


def mem_available() -> int:
    """MemAvailable in bytes (Linux); physical memory elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_fast_half(dtype: str, flags: set[str] | None = None) -> bool:
    """Whether this CPU runs `dtype` (bfloat16/float16) at least as fast as float32 in torch."""
    forced = os.environ.get(ENV_OVERRIDE)
    if forced in ("0", "1"):
        return forced == "1"
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in FAST_FLAGS.get(dtype, ()))


def choose_compute_dtype(
    model_dtype: str,
    n_params: int,
    *,
    device: str = "cpu",
    available: int | None = None,
    fast_half: bool | None = None,
    per_layer: bool = False,
    streamed: bool = False,
) -> DtypeChoice:
    """The rule (see the module docstring). `n_params`: every parameter resident at once;
    `per_layer`: the caller can compute float32 over half weights (core/upcast.py);
    `streamed`: ... and can leave them on disk (`streamed_from_disk`): memory is no limit."""
    if model_dtype not in HALF_DTYPES:
        return DtypeChoice(model_dtype, f"the weights are {model_dtype}")
    if device != "cpu":
        return DtypeChoice(model_dtype, f"{model_dtype} weights on {device}")
    fast = cpu_fast_half(model_dtype) if fast_half is None else fast_half
    if fast:
        return DtypeChoice(model_dtype, f"this CPU computes {model_dtype} natively")
    available = mem_available() if available is None else available
    need = 4 * n_params
    gib = 2**30
    if need < MEMORY_SHARE * available:
        return DtypeChoice(
            FLOAT32,
            f"{model_dtype} weights, no fast {model_dtype} on this CPU, float32 copy "
            f"({need / gib:.1f} GiB) < {MEMORY_SHARE:.0%} of available memory "
            f"({available / gib:.1f} GiB)",
        )
    half = 2 * n_params
    too_big = (
        f"{model_dtype} weights, no fast {model_dtype} on this CPU, a float32 copy "
        f"({need / gib:.1f} GiB) would not fit in available memory ({available / gib:.1f} GiB)"
    )
    if per_layer and streamed:
        return DtypeChoice(
            FLOAT32,
            f"{too_big}: float32 computed layer by layer, each module's weights read from disk "
            "as it runs",
            per_layer=True,
            streamed=True,
        )
    if per_layer and half < PER_LAYER_SHARE * available:
        return DtypeChoice(
            FLOAT32,
            f"{too_big}: float32 computed layer by layer over the {model_dtype} weights",
            per_layer=True,
        )
    return DtypeChoice(
        model_dtype,
        f"float32 copy ({need / gib:.1f} GiB) would not fit comfortably in available memory "
        f"({available / gib:.1f} GiB): evaluated in the weights' {model_dtype}",
    )


def choose_for_folders(
    folders: list[Path], *, device: str = "cpu", per_layer: bool = False
) -> DtypeChoice:
    """One choice for models that are resident together (the gate keeps them all loaded)."""
    infos = [weights_info(f) for f in folders]
    halves = sorted({i.dtype for i in infos if i.dtype in HALF_DTYPES})
    # mixed checkpoints: decide for the half dtype present; float32 ones stay float32 anyway
    dtype = halves[0] if len(halves) == 1 else (infos[0].dtype if infos else FLOAT32)
    n = sum(i.n_params for i in infos)
    return choose_compute_dtype(dtype, n, device=device, per_layer=per_layer)
