"""Is AWQ really applied? Check the compressed-tensors folder holds what the scheme promises.

llm-compressor can match fewer layers than intended (or none) and still save a folder that
loads: transformers then runs the unquantized layers in full precision and nothing complains
(vllm-project/llm-compressor #2953, #1566). So before any logit comparison we read the
safetensors headers and check, for every Linear layer the preflight says the scheme targets
(quantize/awq/preflight.py, computed from the merged model and the recipe's ignore list),
that it is stored the way compressed-tensors' `pack-quantized` format stores it
(compressed_tensors/compressors/pack_quantized/base.py, 0.19):

    <layer>.weight_packed      int32  [out, ceil(in * bits / 32)]   (4-bit values, packed)
    <layer>.weight_scale       float  [out, in / group_size]        ([out, 1] channelwise)
    <layer>.weight_zero_point  int32  [ceil(out * bits / 32), in / group_size]  (ASYM only)
    <layer>.weight_shape       int    [2] = [out, in]

and no plain `<layer>.weight`; that no other layer is quantized; and that config.json carries
the quantization_config (compressed-tensors, pack-quantized, the group size we chose).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from medrelease.quantize.awq.preflight import AwqPlan, LinearShape

BITS = 4  # W4A16
PARAMS = ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point")
SHOWN = 5


def _headers(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Every tensor's header entry (dtype, shape, offsets) and the file holding it."""
    from medrelease.stages.safetensors_check import read_header

    entries: dict[str, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        header, _ = read_header(path)
        for name, entry in header.items():
            if name != "__metadata__" and isinstance(entry, dict):
                entries[name] = entry
                where[name] = path
    return entries, where


def _read_ints(path: Path, entry: dict[str, Any]) -> list[int]:
    """The values of a small integer tensor (weight_shape), read from its byte range."""
    from medrelease.stages.safetensors_check import read_header

    _, data_start = read_header(path)
    begin, end = entry["data_offsets"]
    fmt = {"I64": "q", "I32": "i", "I16": "h", "U8": "B", "I8": "b"}.get(str(entry["dtype"]))
    if fmt is None:
        return []
    with open(path, "rb") as fh:
        fh.seek(data_start + int(begin))
        raw = fh.read(int(end) - int(begin))
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))


def _shown(names: list[str]) -> str:
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def check_config(folder: Path, plan: AwqPlan, scheme: str) -> list[str]:
    """config.json's quantization_config says compressed-tensors W4A16 with our group size."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"config.json cannot be read ({exc})"]
    qcfg = config.get("quantization_config")
    if not isinstance(qcfg, dict):
        return [
            "config.json has no quantization_config: transformers and vLLM would load the "
            "folder as an unquantized model"
        ]
    problems = []
    if qcfg.get("quant_method") != "compressed-tensors":
        problems.append(f"quant_method is {qcfg.get('quant_method')!r}, not 'compressed-tensors'")
    if qcfg.get("format") != "pack-quantized":
        problems.append(f"format is {qcfg.get('format')!r}, not 'pack-quantized'")
    groups = [g for g in (qcfg.get("config_groups") or {}).values() if isinstance(g, dict)]
    if len(groups) != 1:
        problems.append(f"{len(groups)} config_groups, expected 1")
        return problems
    weights = groups[0].get("weights") or {}
    want_sym = scheme == "W4A16"
    want_group = None if plan.group_size == -1 else plan.group_size
    want_strategy = "channel" if plan.group_size == -1 else "group"
    seen = (
        weights.get("num_bits"),
        weights.get("symmetric"),
        weights.get("strategy"),
        weights.get("group_size"),
    )
    if seen != (BITS, want_sym, want_strategy, want_group):
        problems.append(
            "quantization_config weights are num_bits/symmetric/strategy/group_size "
            f"{'/'.join(map(str, seen))}, expected {BITS}/{want_sym}/{want_strategy}/{want_group}"
        )
    return problems


def _expected_shapes(layer: LinearShape, plan: AwqPlan, asym: bool) -> dict[str, list[int]]:
    n, k = layer.out_features, layer.in_features
    groups = 1 if plan.group_size == -1 else k // plan.group_size
    shapes = {
        "weight_packed": [n, math.ceil(k * BITS / 32)],
        "weight_scale": [n, groups],
        "weight_shape": [2],
    }
    if asym:
        shapes["weight_zero_point"] = [math.ceil(n * BITS / 32), groups]
    return shapes


def check_tensors(folder: Path, plan: AwqPlan, scheme: str) -> list[str]:
    """Every targeted layer stored packed (with scale, zero point, shape); no other one."""
    entries, where = _headers(folder)
    if not entries:
        return [f"no safetensors weights in {folder.name}/"]
    asym = scheme == "W4A16_ASYM"
    expected = {layer.name: layer for layer in plan.layers}
    unquantized: list[str] = []
    missing: list[str] = []
    incomplete: list[str] = []
    wrong: list[str] = []
    for name, layer in expected.items():
        if f"{name}.weight_packed" not in entries:
            (unquantized if f"{name}.weight" in entries else missing).append(name)
            continue
        shapes = _expected_shapes(layer, plan, asym)
        lacking = [p for p in shapes if f"{name}.{p}" not in entries]
        if lacking:
            incomplete.append(f"{name} (no {', '.join(lacking)})")
            continue
        for param, shape in shapes.items():
            got = [int(x) for x in entries[f"{name}.{param}"]["shape"]]
            if got != shape:
                wrong.append(f"{name}.{param} is {got}, expected {shape}")
        stored = _read_ints(where[f"{name}.weight_shape"], entries[f"{name}.weight_shape"])
        if stored != [layer.out_features, layer.in_features]:
            wrong.append(
                f"{name}.weight_shape holds {stored}, expected "
                f"{[layer.out_features, layer.in_features]}"
            )
        if f"{name}.weight" in entries:
            wrong.append(f"{name} has both weight_packed and a plain weight")
        if not asym and f"{name}.weight_zero_point" in entries:
            wrong.append(f"{name} has a zero point although {scheme} is symmetric")
    extra = sorted(
        n.removesuffix(".weight_packed")
        for n in entries
        if n.endswith(".weight_packed") and n.removesuffix(".weight_packed") not in expected
    )
    total = len(expected)
    problems = []
    if unquantized:
        problems.append(
            f"{len(unquantized)} of {total} targeted layers stored unquantized (plain `weight`, "
            f"no {'/'.join(PARAMS)}): {_shown(unquantized)}"
        )
    if missing:
        problems.append(
            f"{len(missing)} of {total} targeted layers missing from the safetensors files: "
            f"{_shown(missing)}"
        )
    if incomplete:
        problems.append(f"{len(incomplete)} layers packed incompletely: {_shown(incomplete)}")
    if wrong:
        problems.append(f"wrong packed tensors: {_shown(wrong)}")
    if extra:
        problems.append(
            f"{len(extra)} layers quantized that the scheme does not target (ignore list): "
            f"{_shown(extra)}"
        )
    return problems


def check_contents(folder: Path, plan: AwqPlan, scheme: str) -> dict[str, Any]:
    """The `contents` check of an AWQ quant: ok, detail, and the counts behind it."""
    problems = check_config(folder, plan, scheme) + check_tensors(folder, plan, scheme)
    if problems:
        return {"ok": False, "detail": "; ".join(problems), "expected_layers": len(plan.layers)}
    return {
        "ok": True,
        "detail": (
            f"{len(plan.layers)} of {len(plan.layers)} targeted Linear layers stored "
            f"pack-quantized (group size {plan.group_size})"
        ),
        "expected_layers": len(plan.layers),
        "quantized_layers": len(plan.layers),
        "group_size": plan.group_size,
    }
