"""Completeness and "it stops" on a real model (the real-model tier, see tests/real).

SmolLM2-135M-Instruct (llama, 30 layers, tied embeddings, ChatML, bf16) from
medrelease.testing.realmodels, two noisy copies as stages, a linear merge with the
behavioural stop check on: a good merge passes every check and really stops; the same output
with `layers.5.self_attn.q_proj` and `layers.7.mlp.*` deleted (the case that passed every
check before) is refused, naming the tensors; an lm_head stored beside tied embeddings too.

Set MEDRELEASE_SKIP_REAL_MODELS=1 to skip this tier.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import write_recipe
from merge.test_completeness import edit_weights, failure

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MEDRELEASE_SKIP_REAL_MODELS") == "1",
        reason="MEDRELEASE_SKIP_REAL_MODELS=1",
    ),
]

MERGE = {
    "merge_method": "linear",
    "models": [
        {"model": "sft", "parameters": {"weight": 0.5}},
        {"model": "dpo", "parameters": {"weight": 0.5}},
    ],
    "dtype": "bfloat16",
}
CUT = ("model.layers.5.self_attn.q_proj.weight", "model.layers.7.mlp.")


def noisy_copy(src: Path, dst: Path, seed: int) -> Path:
    """The real model plus a little seeded noise (a stand-in for a short fine-tune)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    for name, t in tensors.items():
        noise = torch.randn(t.shape, generator=gen) * 0.002 * t.float().std()
        tensors[name] = (t.float() + noise).to(t.dtype)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    from medrelease.core.console import Reporter
    from medrelease.merge.step import merge_release
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.testing.realmodels import real_model

    base = real_model("smollm2-135m")
    root = tmp_path_factory.mktemp("real-complete")
    stages = {"sft": noisy_copy(base, root / "sft", 1), "dpo": noisy_copy(base, root / "dpo", 2)}
    recipe = write_recipe(root / "r.yaml", stages, MERGE, output={"stop_check": True})
    merged = merge_release(
        load_recipe(recipe), workdir=root / "w", reporter=Reporter(quiet=True)
    ).merged
    return {**stages, "merged": merged, "manifest": root / "w" / "tiny-release" / "manifest.json"}


def test_a_real_merge_passes_and_stops(real):
    rec = json.loads(real["manifest"].read_text())["steps"]["merge"]
    checks = rec["verification"]
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["completeness"]["detail"] == (
        "every tensor present, with the expected shape and dtype"
    )
    assert checks["stops"]["detail"] == (
        "EOS [2] declared, special, and ending the chat template's assistant turn"
    )
    assert checks["stops_when_generating"]["detail"].startswith("greedy answer ended with EOS 2")


def test_deleted_tensors_of_a_real_merge_are_refused(real, tmp_path):
    from medrelease.merge.completeness import header_problems
    from medrelease.merge.verify import verify_model_folder

    folder = tmp_path / "cut"
    shutil.copytree(real["merged"], folder)
    edit_weights(folder, drop=CUT)
    refs = {"sft": real["sft"], "dpo": real["dpo"]}
    start = time.perf_counter()
    header_problems(folder, refs, MERGE)
    assert time.perf_counter() - start < 5  # headers only: milliseconds when the CPU is free
    checks = verify_model_folder(folder, references=refs, merge=MERGE)
    assert checks["loads"]["ok"] and checks["finite_logits"]["ok"]  # the old checks pass
    assert str(failure(checks)) == (
        "merged model failed check 'completeness': 4 tensor(s) of stage 'sft' missing from "
        "the merged model: model.layers.5.self_attn.q_proj.weight, "
        "model.layers.7.mlp.down_proj.weight, model.layers.7.mlp.gate_proj.weight, "
        "model.layers.7.mlp.up_proj.weight"
    )


def test_an_lm_head_beside_tied_embeddings_is_refused(real, tmp_path):
    from medrelease.merge.completeness import header_problems

    folder = tmp_path / "head"
    shutil.copytree(real["merged"], folder)
    edit_weights(folder, add={"lm_head.weight": "model.embed_tokens.weight"})
    details = [p.detail for p in header_problems(folder, {"sft": real["sft"]}, MERGE)]
    assert details == [
        "1 tensor(s) in the merged model that stage 'sft' does not have: lm_head.weight",
        "config.json ties the embeddings (tie_word_embeddings: true) but the merged model "
        "stores lm_head.weight, which transformers replaces by the input embeddings: the "
        "merged output layer would be thrown away",
    ]
