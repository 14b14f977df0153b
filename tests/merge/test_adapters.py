"""Adapter stages (LoRA and DoRA) materialize to exactly peft's merge_and_unload()."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_bitwise_equal, load_tensors, write_recipe
from medrelease.core.console import Reporter
from medrelease.merge.step import merge_release
from medrelease.pipeline.recipes import load_recipe
from medrelease.testing.tiny import make_adapter


def peft_reference(base: Path, adapter: Path, out: Path) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_adapter_stage_equals_peft_merge(tmp_path: Path, llama, dora: bool):
    adapter = make_adapter(llama["base"], tmp_path / "adapter", dora=dora, seed=7)
    assert (adapter / "adapter_model.safetensors").is_file()
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": llama["base"], "tuned": {"adapter": str(adapter), "base": "base"}},
        {
            "merge_method": "linear",
            "models": [{"model": "tuned", "parameters": {"weight": 1.0}}],
            "dtype": "float32",
        },
    )
    result = merge_release(
        load_recipe(recipe), workdir=tmp_path / "w", reporter=Reporter(quiet=True)
    )
    materialized = tmp_path / "w" / "tiny-release" / "stages" / "tuned"
    reference = peft_reference(llama["base"], adapter, tmp_path / "ref")
    ours = load_tensors(materialized)
    theirs = load_tensors(reference)
    assert_bitwise_equal(ours, theirs)
    base = load_tensors(llama["base"])
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not (ours[name] == base[name]).all(), "adapter changed nothing"
    # a linear merge of one model with weight 1 is that model: the output equals peft's too
    assert_bitwise_equal(load_tensors(result.merged), theirs)
    rec = result.record["stages"]["tuned"]
    assert rec["kind"] == "adapter" and rec["base"] == "base"
    assert "adapter_model.safetensors" in rec["files"]
