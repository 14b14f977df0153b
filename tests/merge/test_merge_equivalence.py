"""Our merge must produce exactly what plain `mergekit-yaml` produces for the same config.

For each architecture and merge method, we run `medrelease merge` (mergekit's library API
plus our finalize/verify) and the `mergekit-yaml` command line on the equivalent
configuration with the same seed, then compare every tensor bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import assert_bitwise_equal, load_tensors, write_recipe
from medrelease.core.console import Reporter
from medrelease.merge.step import merge_release
from medrelease.pipeline.recipes import load_recipe

SEED = 1234


def merge_block(method: str) -> dict:
    if method == "arcee_fusion":
        return {
            "merge_method": method,
            "base_model": "sft",
            "models": [{"model": "sft"}, {"model": "grpo"}],
        }
    if method == "slerp":
        return {
            "merge_method": method,
            "base_model": "sft",
            "models": [{"model": "sft"}, {"model": "grpo"}],
            "parameters": {"t": [0.2, 0.7]},
        }
    if method == "linear":
        return {
            "merge_method": method,
            "models": [
                {"model": "sft", "parameters": {"weight": 0.6}},
                {"model": "grpo", "parameters": {"weight": 0.4}},
            ],
        }
    # ties / dare_ties: task arithmetic against the base
    return {
        "merge_method": method,
        "base_model": "base",
        "models": [
            {"model": "sft", "parameters": {"weight": 0.7, "density": 0.6}},
            {"model": "grpo", "parameters": {"weight": 0.5, "density": 0.4}},
        ],
        "parameters": {"normalize": True},
    }


ARCHS = ("llama", "qwen2", "qwen3", "arcee")
METHODS = ("arcee_fusion", "ties", "dare_ties", "slerp", "linear")
# `make test` merges every method once and every architecture at least once (a diagonal of
# the table, 5 merges); the other 15 pairs run in the heavy tier (make test-heavy, in CI).
DIAGONAL = {(ARCHS[i % len(ARCHS)], m) for i, m in enumerate(METHODS)}
CASES = [
    pytest.param(a, m, id=f"{a}-{m}", marks=() if (a, m) in DIAGONAL else pytest.mark.heavy)
    for a in ARCHS
    for m in METHODS
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,method", CASES)
def test_merge_matches_mergekit_yaml(tmp_path: Path, tiny_families, arch: str, method: str):
    fam = tiny_families(arch)
    stages = {k: fam[k] for k in ("base", "sft", "grpo")}
    merge = {**merge_block(method), "dtype": "float32"}
    recipe = write_recipe(tmp_path / "r.yaml", stages, merge, seed=SEED)
    loaded = load_recipe(recipe)
    result = merge_release(loaded, workdir=tmp_path / "w", reporter=Reporter(quiet=True))

    # names -> paths, the way a user would write a plain mergekit config
    text = yaml.safe_dump(merge)
    for name in ("base", "sft", "grpo"):
        text = text.replace(f"model: {name}\n", f"model: {fam[name]}\n")
        text = text.replace(f"base_model: {name}\n", f"base_model: {fam[name]}\n")
    plain_cfg = yaml.safe_load(text)
    cfg_file = tmp_path / "plain.yml"
    cfg_file.write_text(yaml.safe_dump(plain_cfg))
    out = tmp_path / "plain-out"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "mergekit-yaml"),
            str(cfg_file),
            str(out),
            "--random-seed",
            str(SEED),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = load_tensors(result.merged)
    theirs = load_tensors(out)
    assert len(ours) > 10
    assert_bitwise_equal(ours, theirs)
    # and the merge really changed something relative to each input
    sft = load_tensors(fam["sft"])
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not (ours[name] == sft[name]).all()
