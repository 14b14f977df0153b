"""The manifest records exactly how the release was made; Hub stages resolve to a commit."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from helpers import run_cli, write_recipe
from medrelease.core.console import Reporter
from medrelease.core.errors import InputError
from medrelease.merge.step import merge_release
from medrelease.pipeline.recipes import load_recipe
from medrelease.stages.sources import locate_stage

TIES = {
    "merge_method": "ties",
    "base_model": "base",
    "models": [
        {"model": "sft", "parameters": {"weight": 0.7, "density": 0.6}},
        {"model": "dpo", "parameters": {"weight": 0.5, "density": 0.5}},
    ],
    "dtype": "float32",
}
GENERATION = {"do_sample": False, "repetition_penalty": 1.1, "no_repeat_ngram_size": 6}
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def fake_hub_cache(hf_home: Path, repo: str, src: Path, commit: str) -> Path:
    """Lay out a model in the Hugging Face cache exactly as huggingface_hub stores it."""
    repo_dir = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    shutil.copytree(src, snap)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


@pytest.mark.slow
def test_manifest_records_everything(tmp_path, llama, isolated_hf_home, capsys):
    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_cache(isolated_hf_home, "medrelease-tests/tiny-base", llama["base"], commit)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": "medrelease-tests/tiny-base", "sft": llama["sft"], "dpo": llama["dpo"]},
        TIES,
        output={"chat_template": TEMPLATE, "generation_config": GENERATION},
        seed=77,
    )
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    release = tmp_path / "w" / "tiny-release"
    m = json.loads((release / "manifest.json").read_text())
    assert summary["manifest"].endswith("manifest.json")

    assert m["recipe"]["sha256"] == sha(recipe)
    assert m["release"]["name"] == "tiny-release"
    rec = m["steps"]["merge"]
    assert rec["seed"] == 77 and rec["method"] == "ties"
    for tool in ("medrelease", "mergekit", "transformers", "torch"):
        assert rec["tools"][tool], tool
    assert rec["timings"]["duration_s"] > 0 and "merge" in rec["timings"]["phases_s"]

    base = rec["stages"]["base"]
    assert base["kind"] == "hub" and base["source"] == "medrelease-tests/tiny-base"
    assert base["revision"] == commit
    for name in ("sft", "dpo"):
        assert rec["stages"][name]["kind"] == "local"
        files = rec["stages"][name]["files"]
        assert files["model.safetensors"]["sha256"] == sha(llama[name] / "model.safetensors")
        assert (
            files["model.safetensors"]["size"] == (llama[name] / "model.safetensors").stat().st_size
        )

    on_disk = sorted(
        f"merged/{p.relative_to(release / 'merged').as_posix()}"
        for p in (release / "merged").rglob("*")
        if p.is_file()
    )
    assert sorted(rec["outputs"]) == on_disk
    for rel, info in rec["outputs"].items():
        assert info["sha256"] == sha(release / rel), rel

    # the output carries the recipe's chat template and decoding, and portable provenance
    gen = json.loads((release / "merged" / "generation_config.json").read_text())
    for k, v in GENERATION.items():
        assert gen[k] == v
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(release / "merged"))
    assert tok.chat_template == TEMPLATE
    assert gen["eos_token_id"] == tok.eos_token_id
    cfg_text = (release / "merged" / "mergekit_config.yml").read_text()
    assert f"medrelease-tests/tiny-base@{commit}" in cfg_text
    assert str(tmp_path) not in cfg_text  # no local paths leak into the published config
    assert not (release / "merged" / "README.md").exists()
    assert all(c["ok"] for c in rec["verification"].values())


def test_hub_stage_offline_missing_gives_clear_error(tmp_path, isolated_hf_home):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": "medrelease-tests/not-cached@v1", "sft": "./x"},
        {
            "merge_method": "linear",
            "models": [{"model": "base"}, {"model": "sft"}],
            "parameters": {"weight": 1.0},
        },
    )
    loaded = load_recipe(recipe)
    with pytest.raises(InputError) as info:
        locate_stage(loaded, "base")
    assert "not in the local Hub cache" in str(info.value)
    assert "HF_HUB_OFFLINE" in (info.value.hint or "")


def test_hub_stage_pinned_revision(tmp_path, llama, isolated_hf_home):
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    fake_hub_cache(isolated_hf_home, "medrelease-tests/pinned", llama["base"], commit)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": f"medrelease-tests/pinned@{commit}", "sft": "./x"},
        {
            "merge_method": "linear",
            "models": [{"model": "base"}, {"model": "sft"}],
            "parameters": {"weight": 1.0},
        },
    )
    stage = locate_stage(load_recipe(recipe), "base")
    assert stage.revision == commit and stage.requested_revision == commit
    assert (stage.path / "config.json").is_file()


@pytest.mark.slow
def test_bad_generation_config_is_a_recipe_error(tmp_path, llama, capsys):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"sft": llama["sft"], "dpo": llama["dpo"]},
        {
            "merge_method": "linear",
            "models": [{"model": "sft"}, {"model": "dpo"}],
            "parameters": {"weight": 1.0},
        },
        output={"generation_config": {"do_sampel": False}},
    )
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 2
    err = capsys.readouterr().err
    assert "do_sampel" in err
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()


@pytest.mark.slow
def test_nan_weights_fail_verification(tmp_path, llama, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(llama["dpo"], bad)
    state = load_file(str(bad / "model.safetensors"))
    state["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"sft": llama["sft"], "dpo": bad},
        {
            "merge_method": "linear",
            "models": [{"model": "sft"}, {"model": "dpo"}],
            "parameters": {"weight": 1.0},
        },
    )
    code = run_cli("merge", recipe, "--workdir", tmp_path / "w")
    err = capsys.readouterr().err
    assert code in (3, 5), err
    assert "NaN" in err or "nan" in err.lower()
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()
    assert torch.isnan(state["model.layers.0.mlp.up_proj.weight"]).any()


def test_reporter_quiet_merge_library_api(tmp_path, llama):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"sft": llama["sft"], "dpo": llama["dpo"]},
        {
            "merge_method": "linear",
            "models": [{"model": "sft"}, {"model": "dpo"}],
            "parameters": {"weight": 1.0},
        },
    )
    result = merge_release(
        load_recipe(recipe), workdir=tmp_path / "w", reporter=Reporter(quiet=True)
    )
    assert (result.merged / "config.json").is_file()
    assert result.summary()["status"] == "done"
