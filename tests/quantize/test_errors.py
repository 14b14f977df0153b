"""Problems a user can fix get one clear message and the right exit code, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import run_cli
from medrelease.core.errors import EnvironmentProblem, InputError, RecipeError, UsageError
from quantize.quanthelpers import RELEASE, quant_release


def test_imatrix_without_built_tools_is_refused_before_any_work(
    tmp_path, tiny_llama, capsys, monkeypatch
):
    from medrelease.quantize.gguf import tools as llama_tools

    monkeypatch.setattr(llama_tools, "tools_dir", lambda: tmp_path / "nothing-built")
    recipe = quant_release(
        tmp_path, tiny_llama, {"gguf": {"types": ["Q4_K_M"], "imatrix": {}}}
    ).recipe
    assert run_cli("quantize", recipe, "-w", tmp_path) == 7
    err = capsys.readouterr().err
    assert "llama.cpp's `llama-imatrix` is not installed" in err
    assert "medrelease setup" in err and "Traceback" not in err
    assert not (tmp_path / RELEASE / "quant").exists()


def test_types_that_require_an_imatrix_need_the_imatrix_setting(tmp_path, tiny_llama):
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    recipe = quant_release(tmp_path, tiny_llama, {"gguf": {"types": ["IQ2_XXS"]}}).recipe
    with pytest.raises(RecipeError, match=r"types \['IQ2_XXS'\] need an importance") as info:
        quantize_release(load_recipe(recipe), workdir=tmp_path)
    assert info.value.hint is not None and "imatrix: {calibration: default}" in info.value.hint


def test_missing_merged_model_and_missing_section(tmp_path, tiny_llama, capsys):
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": ["Q8_0"]}).recipe
    shutil.rmtree(tmp_path / RELEASE / "merged")
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 3
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "input" and "medrelease merge" in out["hint"]

    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    text = recipe.read_text().split("quantize:")[0]
    recipe.write_text(text)
    with pytest.raises(UsageError, match="no quantize: section"):
        quantize_release(load_recipe(recipe), workdir=tmp_path)


def test_not_enough_disk(tmp_path, tiny_llama, monkeypatch):
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.gguf import build as gguf
    from medrelease.quantize.step import quantize_release

    recipe = quant_release(tmp_path, tiny_llama, {"gguf": ["Q8_0"]}).recipe
    real = shutil.disk_usage

    def tiny_disk(path):
        return real(path)._replace(free=100_000)

    monkeypatch.setattr(gguf.shutil, "disk_usage", tiny_disk)
    with pytest.raises(
        EnvironmentProblem, match=r"not enough free disk.*GGUF intermediate"
    ) as info:
        quantize_release(load_recipe(recipe), workdir=tmp_path)
    assert info.value.exit_code == 7 and "--workdir" in (info.value.hint or "")
    assert not (tmp_path / RELEASE / "quant" / "gguf").exists()


@pytest.mark.slow
def test_unrecognised_bpe_tokenizer_is_explained(tmp_path):
    """A BPE tokenizer trained from scratch (tiny qwen2) is unknown to llama.cpp's converter."""
    from medrelease.quantize.gguf.build import convert
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    model = build_tiny_model(tmp_path / "qwen2", TinySpec(arch="qwen2"))
    with pytest.raises(InputError) as info:
        convert(model, tmp_path / "out", "x", "f16", None)
    assert "does not recognise the BPE pre-tokenizer" in str(info.value)
    hint = info.value.hint or ""
    assert "trained from scratch" in hint and "tokenizer_from" in hint
    assert "quantize.gguf.pre_tokenizer" in hint


@pytest.mark.slow
def test_unsupported_architecture_is_explained(tmp_path, tiny_llama):
    from medrelease.quantize.gguf.build import convert

    model = tmp_path / "odd"
    shutil.copytree(tiny_llama, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["architectures"] = ["MedicalOracleForCausalLM"]
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError) as info:
        convert(model, tmp_path / "out", "x", "f16", None)
    assert "does not support the architecture 'MedicalOracleForCausalLM'" in str(info.value)
    assert not any((tmp_path / "out").glob("*.gguf"))


def test_merged_folder_unchanged_by_quantize_inputs(tmp_path: Path):
    """The placeholder was replaced: contract example keys are accepted as written."""
    from medrelease.quantize.config import QuantizeConfig

    cfg = QuantizeConfig.model_validate(
        {"gguf": {"types": ["Q8_0"], "imatrix": {"calibration": "default"}}, "awq": {}}
    )
    assert cfg.gguf is not None and cfg.gguf.imatrix is not None
    assert cfg.awq is not None and cfg.awq.scheme == "W4A16_ASYM"
