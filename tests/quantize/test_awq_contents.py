"""AWQ really applied: every targeted layer is stored pack-quantized, checked by construction.

One real llm-compressor AWQ output of the tiny llama (2 layers x 7 Linear = 14 targeted,
lm_head ignored) is made once; each test copies it and breaks one thing on purpose.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

LAYER = "model.layers.1.mlp.down_proj"


@pytest.fixture(scope="module")
def awq_output(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medrelease.core.console import Reporter
    from medrelease.quantize.awq.build import quantize_awq, quiet_llmcompressor
    from medrelease.quantize.config import AwqConfig

    out = tmp_path_factory.mktemp("awq") / "out"
    cfg = AwqConfig(num_samples=4, max_seq_length=32, n_grid=3)
    texts = ["The patient was given 5 mg of the drug twice a day for a week."] * 4
    with quiet_llmcompressor():
        quantize_awq(tiny_llama, out, cfg, texts, seed=0, reporter=Reporter(quiet=True))
    return out


def plan_for(model: Path, ignore: list[str] | None = None, group_size: Any = "auto") -> Any:
    from medrelease.quantize.awq.preflight import preflight_merged

    return preflight_merged(model, ignore or ["lm_head"], group_size)


def copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def store_unquantized(folder: Path, layer: str) -> None:
    """Rewrite the folder's weights with `layer` as a plain float `weight` (what a layer that
    llm-compressor skipped looks like), everything else as it was."""
    import torch
    from safetensors.torch import load_file, save_file

    (path,) = folder.glob("*.safetensors")
    tensors = load_file(str(path))
    out, inp = (int(x) for x in tensors.pop(f"{layer}.weight_shape"))
    for param in ("weight_packed", "weight_scale", "weight_zero_point"):
        del tensors[f"{layer}.{param}"]
    tensors[f"{layer}.weight"] = torch.randn(out, inp, dtype=torch.float32)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_good_output_has_every_targeted_layer_packed(awq_output: Path, tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    from medrelease.quantize.awq.check import load_check
    from medrelease.quantize.awq.contents import check_contents

    plan = plan_for(tiny_llama)
    assert plan.group_size == 128 and len(plan.layers) == 14
    result = check_contents(awq_output, plan, "W4A16_ASYM")
    assert result == {
        "ok": True,
        "detail": "14 of 14 targeted Linear layers stored pack-quantized (group size 128)",
        "expected_layers": 14,
        "quantized_layers": 14,
        "group_size": 128,
    }
    model, info = AutoModelForCausalLM.from_pretrained(str(awq_output), output_loading_info=True)
    assert load_check(model, info, plan.names) == {
        "ok": True,
        "detail": "loads in transformers with 14 quantized layers",
    }


def test_layer_stored_unquantized_is_named(
    awq_output: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    from medrelease.quantize.awq.contents import check_contents

    broken = copy(awq_output, tmp_path / "broken")
    store_unquantized(broken, LAYER)
    result = check_contents(broken, plan_for(tiny_llama), "W4A16_ASYM")
    assert result["ok"] is False
    assert result["detail"] == (
        "1 of 14 targeted layers stored unquantized (plain `weight`, no "
        f"weight_packed/weight_scale/weight_shape/weight_zero_point): {LAYER}"
    )


def test_unquantized_layer_is_also_caught_when_transformers_loads_it(
    awq_output: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    """The second line of defence: transformers' own loading report."""
    from transformers import AutoModelForCausalLM

    from medrelease.quantize.awq.check import load_check

    broken = copy(awq_output, tmp_path / "broken")
    store_unquantized(broken, LAYER)
    model, info = AutoModelForCausalLM.from_pretrained(str(broken), output_loading_info=True)
    result = load_check(model, info, plan_for(tiny_llama).names)
    assert result["ok"] is False
    assert f"{LAYER}.weight" in result["detail"], result["detail"]


def test_missing_quantization_config_is_named(
    awq_output: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    from medrelease.quantize.awq.contents import check_contents

    broken = copy(awq_output, tmp_path / "noconfig")
    cfg = json.loads((broken / "config.json").read_text())
    del cfg["quantization_config"]
    (broken / "config.json").write_text(json.dumps(cfg, indent=2))
    result = check_contents(broken, plan_for(tiny_llama), "W4A16_ASYM")
    assert result == {
        "ok": False,
        "detail": "config.json has no quantization_config: transformers and vLLM would load "
        "the folder as an unquantized model",
        "expected_layers": 14,
    }


def test_layers_quantized_against_the_ignore_list_and_wrong_group_size(
    awq_output: Path, tiny_llama: Path
) -> None:
    from medrelease.quantize.awq.contents import check_contents

    ignoring = plan_for(tiny_llama, ["lm_head", "re:.*down_proj$"])
    assert len(ignoring.layers) == 12
    assert check_contents(awq_output, ignoring, "W4A16_ASYM")["detail"] == (
        "2 layers quantized that the scheme does not target (ignore list): "
        "model.layers.0.mlp.down_proj, model.layers.1.mlp.down_proj"
    )
    detail = check_contents(awq_output, plan_for(tiny_llama, group_size=64), "W4A16_ASYM")["detail"]
    assert detail.startswith(
        "quantization_config weights are num_bits/symmetric/strategy/group_size "
        "4/False/group/128, expected 4/False/group/64; wrong packed tensors: "
        "model.layers.0.self_attn.q_proj.weight_scale is [256, 2], expected [256, 4]"
    )
    assert check_contents(awq_output, plan_for(tiny_llama), "W4A16")["ok"] is False  # symmetric
