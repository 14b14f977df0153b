"""Merged model completeness, tested by construction: a good merge passes; the same output with
tensors deleted, an extra tensor, another dtype or a tie that disagrees with config.json fails
with a message naming the tensors and the likely cause (exit 5, nothing moved into merged/).

transformers loads a checkpoint with holes (it initialises the missing tensors at random and
only logs them), so every check that loads the model passes such an output: these must not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import LINEAR, run_cli, write_recipe
from medrelease.core.console import Reporter
from medrelease.core.errors import VerificationError
from medrelease.merge.completeness import header_problems, likely_cause
from medrelease.merge.step import merge_release
from medrelease.merge.verify import raise_on_failure, verify_model_folder
from medrelease.pipeline.recipes import load_recipe

CUT = ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.")
CAUSE = (
    "likely cause: mergekit's architecture definition for LlamaForCausalLM does not list "
    "these tensors (update mergekit, or report the architecture upstream)"
)


@pytest.fixture(scope="module")
def merged(llama, tmp_path_factory) -> Path:
    """A good linear merge of the tiny llama sft and grpo stages."""
    root = tmp_path_factory.mktemp("complete")
    recipe = write_recipe(root / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    result = merge_release(load_recipe(recipe), workdir=root / "w", reporter=Reporter(quiet=True))
    return result.merged


def edit_weights(folder: Path, drop=(), add: dict | None = None, cast: dict | None = None):
    """Rewrite model.safetensors without / with some tensors (as a broken merge would)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    for name in list(tensors):
        if any(name == d or (d.endswith(".") and name.startswith(d)) for d in drop):
            del tensors[name]
    for name, like in (add or {}).items():
        tensors[name] = tensors[like].clone()
    for name, dtype in (cast or {}).items():
        tensors[name] = tensors[name].to(dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})


def broken_copy(merged: Path, dst: Path, **edits) -> Path:
    shutil.copytree(merged, dst)
    edit_weights(dst, **edits)
    return dst


def verify(folder: Path, llama) -> dict:
    return verify_model_folder(
        folder, references={"sft": llama["sft"], "grpo": llama["grpo"]}, merge=LINEAR
    )


def failure(checks: dict) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        raise_on_failure(checks)
    assert info.value.exit_code == 5
    return info.value


@pytest.mark.slow
def test_a_good_merge_is_complete(merged, llama):
    checks = verify(merged, llama)
    assert checks["completeness"] == {
        "ok": True,
        "detail": "every tensor present, with the expected shape and dtype",
    }
    assert all(c["ok"] for c in checks.values()), checks


@pytest.mark.slow
def test_deleted_tensors_are_named_with_the_likely_cause(merged, llama, tmp_path):
    folder = broken_copy(merged, tmp_path / "cut", drop=CUT)
    checks = verify(folder, llama)
    # everything else still passes: this is the hole the completeness check closes
    assert checks["loads"]["ok"] and checks["finite_logits"]["ok"]
    err = failure(checks)
    assert str(err) == (
        "merged model failed check 'completeness': 4 tensor(s) of stage 'sft' missing from "
        "the merged model: model.layers.1.mlp.down_proj.weight, "
        "model.layers.1.mlp.gate_proj.weight, model.layers.1.mlp.up_proj.weight, "
        "model.layers.1.self_attn.q_proj.weight"
    )
    assert (
        err.hint == f"{CAUSE}; nothing was moved into merged/; fix the recipe or inputs and re-run"
    )


@pytest.mark.slow
def test_an_unexpected_tensor_is_named(merged, llama, tmp_path):
    folder = broken_copy(
        merged,
        tmp_path / "extra",
        add={"model.layers.1.mlp.extra_proj.weight": "model.norm.weight"},
    )
    err = failure(verify(folder, llama))
    assert str(err) == (
        "merged model failed check 'completeness': 1 tensor(s) in the merged model that stage "
        "'sft' does not have: model.layers.1.mlp.extra_proj.weight"
    )


@pytest.mark.slow
def test_transformers_loading_report_is_a_check_too(merged, llama, tmp_path):
    # no reference stage to compare with: transformers' own MISSING list still catches it
    folder = broken_copy(merged, tmp_path / "cut", drop=CUT)
    checks = verify_model_folder(folder, references={}, merge=LINEAR)
    assert checks["completeness"]["detail"] == (
        "transformers reports 4 MISSING tensor(s) (it would initialise them at random): "
        "model.layers.1.mlp.down_proj.weight, model.layers.1.mlp.gate_proj.weight, "
        "model.layers.1.mlp.up_proj.weight, model.layers.1.self_attn.q_proj.weight"
    )


@pytest.mark.slow
def test_tie_mismatch_with_config(merged, llama, tmp_path):
    folder = tmp_path / "tied"
    shutil.copytree(merged, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["tie_word_embeddings"] = True  # the stages untie; lm_head.weight is stored
    (folder / "config.json").write_text(json.dumps(cfg))
    problems = header_problems(folder, {"sft": llama["sft"]}, LINEAR)
    assert [p.detail for p in problems] == [
        "config.json ties the embeddings (tie_word_embeddings: true) but the merged model "
        "stores lm_head.weight, which transformers replaces by the input embeddings: the "
        "merged output layer would be thrown away"
    ]


@pytest.mark.slow
def test_untied_config_without_lm_head(merged, llama, tmp_path):
    folder = broken_copy(merged, tmp_path / "nohead", drop=("lm_head.weight",))
    details = [p.detail for p in header_problems(folder, {"sft": llama["sft"]}, LINEAR)]
    assert details == [
        "1 tensor(s) of stage 'sft' missing from the merged model: lm_head.weight",
        "config.json unties the embeddings (tie_word_embeddings: false) but the merged model "
        "has no lm_head.weight: transformers would initialise the output layer at random",
    ]


@pytest.mark.slow
def test_wrong_dtype_is_named(merged, llama, tmp_path):
    import torch

    folder = broken_copy(merged, tmp_path / "f16", cast={"model.norm.weight": torch.float16})
    details = [p.detail for p in header_problems(folder, {"sft": llama["sft"]}, LINEAR)]
    assert details == ["1 tensor(s) not in the expected dtype F32: model.norm.weight (F16)"]


def test_likely_causes():
    llama_cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert likely_cause(llama_cfg, LINEAR) == CAUSE
    sliced = {**LINEAR, "slices": [{"sources": []}]}
    assert likely_cause({**llama_cfg, "num_hidden_layers": 2}, sliced) == (
        "likely cause: the merge's `slices:`/`modules:` do not cover every layer the config "
        "declares (num_hidden_layers=2)"
    )
    odd = {"architectures": ["MedFooForCausalLM"], "model_type": "medfoo"}
    assert likely_cause(odd, LINEAR) == (
        "likely cause: an unsupported model type: mergekit has no architecture definition "
        "for MedFooForCausalLM (model_type 'medfoo') and guessed one from tensor names"
    )


def test_a_config_with_wrongly_typed_fields_is_one_clear_error(tmp_path):
    """config.json's fields the check reads are checked on read: a wrong type is a
    VerificationError naming the file and the field, not a TypeError halfway through."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"architectures": "LlamaForCausalLM", "text_config": {"vocab_size": "32"}})
    )
    with pytest.raises(VerificationError) as info:
        header_problems(tmp_path, {}, LINEAR)
    assert info.value.message == (
        'config.json has value(s) of the wrong type: architectures: "LlamaForCausalLM"; '
        'vocab_size: "32"'
    )
    assert info.value.where == str(config)
    config.write_text("[]")
    with pytest.raises(VerificationError) as info:
        header_problems(tmp_path, {}, LINEAR)
    assert info.value.message == "config.json is not a JSON object"


@pytest.mark.slow
def test_merge_refuses_an_incomplete_output(llama, tmp_path, capsys, monkeypatch):
    """Through the CLI: mergekit's output loses tensors -> exit 5, nothing in merged/."""
    import medrelease.merge.step as step

    real = step.run_mergekit

    def lossy_mergekit(config, out, **kw):
        real(config, out, **kw)
        edit_weights(Path(out), drop=CUT)

    monkeypatch.setattr(step, "run_mergekit", lossy_mergekit)
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 5
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "merged model failed check 'completeness': 4 tensor(s) of stage 'sft' missing from "
        "the merged model: model.layers.1.mlp.down_proj.weight" in err
    ), err
    assert "mergekit's architecture definition for LlamaForCausalLM" in err
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()


@pytest.mark.slow
def test_a_wider_dtype_is_a_note_not_a_failure(merged, llama):
    # mergekit's arcee_fusion multiplies by a float32 mask: asked for bfloat16, it stores
    # float32 tensors. Lossless, so the check passes and says so.
    problems = header_problems(merged, {"sft": llama["sft"]}, {**LINEAR, "dtype": "bfloat16"})
    assert [p.warning for p in problems] == [True]
    assert problems[0].detail.startswith(
        "21 tensor(s) stored wider than the expected dtype BF16 (lossless, larger files): "
        "lm_head.weight (F32), model.embed_tokens.weight (F32)"
    )
