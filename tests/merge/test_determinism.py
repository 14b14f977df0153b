"""Same recipe, same bytes: every file of merged/ is identical across processes and hash seeds.

mergekit picks a "base" from an unordered set when a config has none (config.json, the copied
tokenizer and generation_config.json come from it); set order follows PYTHONHASHSEED. Each
method runs in fresh `medrelease merge` processes with PYTHONHASHSEED=1..3 and every output
file's sha256 is compared. The linear merge (no base_model) uses stages that differ in what
mergekit copies from its donor, so an arbitrary choice would show.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli, write_recipe
from merge.test_merge_equivalence import merge_block

METHODS = ("arcee_fusion", "ties", "dare_ties", "slerp", "linear")
SEEDS = (1, 2, 3)

# every recipe of one hash seed runs in one process (start-up is most of a tiny merge)
RUNNER = """
import sys
from medrelease.cli import main
workdir = sys.argv[1]
for recipe in sys.argv[2:]:
    code = main(["merge", recipe, "--workdir", workdir])
    if code:
        sys.exit(f"{recipe}: exit {code}")
"""


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def distinct_copy(src: Path, dst: Path) -> Path:
    """The same weights, but what mergekit copies from its donor model differs."""
    shutil.copytree(src, dst)
    gen = json.loads((dst / "generation_config.json").read_text())
    gen["max_length"] = 77
    (dst / "generation_config.json").write_text(json.dumps(gen, indent=2))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["use_cache"] = not cfg.get("use_cache", True)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    tok["model_max_length"] = 333
    (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    return dst


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_every_merge_method_gives_the_same_bytes_under_any_hash_seed(tmp_path: Path, llama):
    stages = {
        "base": llama["base"],
        "sft": llama["sft"],
        "grpo": distinct_copy(llama["grpo"], tmp_path / "grpo-distinct"),
    }
    recipes = []
    for method in METHODS:
        merge = {**merge_block(method), "dtype": "float32"}
        recipes.append(write_recipe(tmp_path / f"{method}.yaml", stages, merge, name=method))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    runs: dict[int, Path] = {}
    for seed in SEEDS:
        workdir = tmp_path / f"w{seed}"
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(workdir), *map(str, recipes)],
            env={**env, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[seed] = workdir

    for method in METHODS:
        first = digests(runs[SEEDS[0]] / method / "merged")
        names = set(first)
        # the whole release folder, not only weights
        for must in ("config.json", "generation_config.json", "mergekit_config.yml"):
            assert must in names, (method, must)
        assert "model.safetensors" in names and any(n.startswith("tokenizer") for n in names)
        for seed in SEEDS[1:]:
            other = digests(runs[seed] / method / "merged")
            differ = sorted(n for n in names | set(other) if first.get(n) != other.get(n))
            assert not differ, f"{method}: PYTHONHASHSEED={seed} changed {differ}"

    # without base_model, the donor of config/tokenizer/generation_config is the first model
    # listed (sft), not whichever a set yields first
    linear = runs[SEEDS[0]] / "linear" / "merged"
    assert json.loads((linear / "generation_config.json").read_text()).get("max_length") != 77
    assert json.loads((linear / "tokenizer_config.json").read_text())["model_max_length"] != 333
    sft_cfg = json.loads((llama["sft"] / "config.json").read_text())
    assert json.loads((linear / "config.json").read_text()).get("use_cache") == sft_cfg.get(
        "use_cache", True
    )


def test_ordered_configuration_keeps_mergekit_members_in_config_order():
    from mergekit.config import MergeConfiguration

    from medrelease.merge.determinism import ordered_merge_configuration

    config = {
        "merge_method": "ties",
        "base_model": "/m/zeta",
        "models": [{"model": f"/m/{n}"} for n in ("omega", "alpha", "mid", "zeta")],
    }
    ours = [str(m) for m in ordered_merge_configuration(config).referenced_models()]
    assert ours == ["/m/zeta", "/m/omega", "/m/alpha", "/m/mid"]
    theirs = MergeConfiguration.model_validate(config).referenced_models()
    assert sorted(ours) == sorted(str(m) for m in theirs)


def _ambiguous(tmp_path: Path, stages: dict, merge: dict, capsys) -> str:
    recipe = write_recipe(tmp_path / "r.yaml", stages, merge)
    assert run_cli("validate", recipe) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())  # the console wraps long lines


def line_of(tmp_path: Path, text: str) -> str:
    """`r.yaml:N` of the first line of the recipe holding `text`."""
    lines = (tmp_path / "r.yaml").read_text().splitlines()
    return f"r.yaml:{next(i for i, line in enumerate(lines, 1) if text in line)}"


LINEAR_BASE_SFT = {
    "merge_method": "linear",
    "models": [
        {"model": "base", "parameters": {"weight": 0.5}},
        {"model": "sft", "parameters": {"weight": 0.5}},
    ],
}


def test_tokenizer_source_keyword_colliding_with_a_stage_is_refused(tmp_path, capsys):
    # the case: stages `base` and `sft`, linear, `tokenizer_source: base`
    err = _ambiguous(
        tmp_path,
        {"base": "./b", "sft": "./s"},
        {**LINEAR_BASE_SFT, "tokenizer_source": "base"},
        capsys,
    )
    where = line_of(tmp_path, "tokenizer_source:")
    assert (
        f"{where}: tokenizer_source: 'base' is both mergekit's keyword here (the base "
        "model's tokenizer) and a stage of this recipe; mergekit reads the keyword" in err
    ), err
    assert "rename stage 'base' (e.g. to 'base_stage')" in err


def test_tokenizer_source_base_without_base_model_is_refused(tmp_path, capsys):
    err = _ambiguous(
        tmp_path,
        {"pretrained": "./b", "sft": "./s"},
        {
            "merge_method": "linear",
            "models": [
                {"model": "pretrained", "parameters": {"weight": 0.5}},
                {"model": "sft", "parameters": {"weight": 0.5}},
            ],
            "tokenizer_source": "base",
        },
        capsys,
    )
    where = line_of(tmp_path, "tokenizer_source:")
    assert (
        f"{where}: tokenizer source 'base' without merge.base_model: mergekit builds the "
        "tokenizer of the base model, and without a base_model it takes an arbitrary model" in err
    ), err
    assert "add `base_model: pretrained` to merge:" in err


def test_union_tokenizer_block_without_base_model_is_refused(tmp_path, capsys):
    # a `tokenizer:` block's source defaults to union, which starts from "the base"
    err = _ambiguous(
        tmp_path,
        {"a": "./a", "b": "./b"},
        {
            "merge_method": "linear",
            "models": [
                {"model": "a", "parameters": {"weight": 0.5}},
                {"model": "b", "parameters": {"weight": 0.5}},
            ],
            "tokenizer": {"pad_to_multiple_of": 64},
        },
        capsys,
    )
    assert "tokenizer source 'union' without merge.base_model" in err, err


def test_union_keyword_colliding_with_a_stage_is_refused(tmp_path, capsys):
    err = _ambiguous(
        tmp_path,
        {"union": "./u", "sft": "./s"},
        {
            "merge_method": "ties",
            "base_model": "union",
            "models": [{"model": "sft", "parameters": {"weight": 1.0, "density": 0.5}}],
            "tokenizer": {"source": "union"},
        },
        capsys,
    )
    assert (
        "tokenizer.source: 'union' is both mergekit's keyword here (every model's tokens) "
        "and a stage of this recipe" in err
    ), err


def test_stage_name_as_chat_template_is_refused(tmp_path, capsys):
    err = _ambiguous(
        tmp_path,
        {"base": "./b", "sft": "./s"},
        {**LINEAR_BASE_SFT, "base_model": "base", "chat_template": "sft"},
        capsys,
    )
    assert (
        "chat_template: 'sft' is a stage of this recipe, but mergekit reads chat_template as "
        "a template name (auto, alpaca, chatml, exaone, llama3, mistral) or Jinja text" in err
    ), err


def test_keywords_are_read_from_mergekits_schema():
    from medrelease.merge.ambiguity import chat_template_names, tokenizer_keywords

    assert tokenizer_keywords() == {
        ("tokenizer_source",): ["union", "base"],
        ("tokenizer", "source"): ["union", "base"],
    }
    assert chat_template_names()[0] == "auto" and "chatml" in chat_template_names()


def test_unambiguous_settings_still_validate(tmp_path, capsys):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"pretrained": "./b", "sft": "./s"},
        {
            **LINEAR_BASE_SFT
            | {
                "models": [
                    {"model": "pretrained", "parameters": {"weight": 0.5}},
                    {"model": "sft", "parameters": {"weight": 0.5}},
                ]
            },
            "base_model": "pretrained",
            "tokenizer_source": "base",
        },
    )
    assert run_cli("validate", recipe) == 0, capsys.readouterr().err
    # a stage named `base` that is the base_model: the keyword and the stage are one model
    recipe = write_recipe(
        tmp_path / "r2.yaml",
        {"base": "./b", "sft": "./s"},
        {**LINEAR_BASE_SFT, "base_model": "base", "tokenizer_source": "base"},
    )
    assert run_cli("validate", recipe) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_chat_template_auto_with_a_tie_is_refused(tmp_path, capsys, tiny_families):
    qwen = tiny_families("qwen2")  # ChatML, in chat_template.jinja
    other = tmp_path / "grpo"
    shutil.copytree(qwen["grpo"], other)
    (other / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    )
    merge = {
        "merge_method": "linear",
        "base_model": "sft",
        "models": [
            {"model": "sft", "parameters": {"weight": 0.5}},
            {"model": "grpo", "parameters": {"weight": 0.5}},
        ],
        "chat_template": "auto",
    }
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": qwen["sft"], "grpo": other}, merge)
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"{line_of(tmp_path, 'chat_template:')}: chat_template: auto finds no most common "
        "template: stages sft, grpo have different templates, as many times each, and "
        "mergekit breaks the tie by set order" in err
    ), err
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()
