"""It stops: the merged model declares every end-of-turn/EOS token its stages declared, the
chat template ends an assistant turn with one of them, and each is a special token.

The stages here are shaped like Llama-3 / Qwen instruct checkpoints: the tokenizer's EOS is
`<|endoftext|>` (id 0), the chat template ends each turn with `<|im_end|>` (id 2), and
generation_config.json lists both ([0, 2]). Tests strip one id on purpose (in a stage, in
every stage, in the merged output) and assert what happens, message for message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import LINEAR, run_cli, write_recipe
from medrelease.checks.stops import (
    DeclaredEos,
    declared_eos_tokens,
    end_of_turn,
    generation_stops,
    stop_problems,
)
from medrelease.core.console import Reporter
from medrelease.merge.step import merge_release
from medrelease.pipeline.recipes import load_recipe

EOT_MISSING = (
    "the chat template ends an assistant turn with '<|im_end|>' (id 2), which "
    "generation_config.eos_token_id [0] does not contain: generation would not stop there"
)


def instruct_like(src: Path, dst: Path, eos_ids: list[int]) -> Path:
    """A copy of a tiny qwen2 stage with a Llama-3-like EOS setup."""
    shutil.copytree(src, dst)
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    tok["eos_token"] = "<|endoftext|>"
    (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    gen = json.loads((dst / "generation_config.json").read_text())
    gen["eos_token_id"] = eos_ids
    (dst / "generation_config.json").write_text(json.dumps(gen, indent=2))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["eos_token_id"] = 0
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


@pytest.fixture(scope="module")
def qwen(tiny_families) -> dict[str, Path]:
    return tiny_families("qwen2")


def merge(tmp_path: Path, stages: dict[str, Path], **extra) -> Path:
    recipe = write_recipe(tmp_path / "r.yaml", stages, LINEAR, **extra)
    return merge_release(
        load_recipe(recipe), workdir=tmp_path / "w", reporter=Reporter(quiet=True)
    ).merged


def gen_eos(folder: Path) -> list[int] | int:
    return json.loads((folder / "generation_config.json").read_text())["eos_token_id"]


@pytest.mark.slow
def test_a_multi_token_eos_list_survives_merge_and_finalize(qwen, tmp_path):
    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0, 2]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0, 2]),
    }
    merged = merge(tmp_path, stages)
    assert gen_eos(merged) == [0, 2]
    m = json.loads((tmp_path / "w" / "tiny-release" / "manifest.json").read_text())
    checks = m["steps"]["merge"]["verification"]
    assert checks["stops"] == {
        "ok": True,
        "detail": "EOS [0, 2] declared, special, and ending the chat template's assistant turn",
    }


@pytest.mark.slow
def test_an_id_stripped_from_one_stage_is_kept_from_the_others(qwen, tmp_path):
    # mergekit copies generation_config.json from the first model (sft), which lost id 2
    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0, 2]),
    }
    merged = merge(tmp_path, stages)
    assert gen_eos(merged) == [0, 2]
    m = json.loads((tmp_path / "w" / "tiny-release" / "manifest.json").read_text())
    assert m["steps"]["merge"]["output_settings"]["eos_kept_from_stages"] == {"2": "grpo"}


@pytest.mark.slow
def test_an_id_stripped_from_every_stage_fails_the_merge(qwen, tmp_path, capsys):
    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0]),
    }
    recipe = write_recipe(tmp_path / "r.yaml", stages, LINEAR)
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 5
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: merged model failed check 'stops': {EOT_MISSING}" in err, err
    assert "fix: keep every end-of-turn token in generation_config.eos_token_id" in err
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()


@pytest.mark.slow
def test_an_id_stripped_from_the_merged_output_is_detected(qwen, tmp_path):
    from medrelease.merge.verify import verify_model_folder

    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0, 2]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0, 2]),
    }
    merged = merge(tmp_path, stages)
    gen = json.loads((merged / "generation_config.json").read_text())
    gen["eos_token_id"] = [0]
    (merged / "generation_config.json").write_text(json.dumps(gen))
    checks = verify_model_folder(merged, eos_from=stages)
    assert checks["stops"]["ok"] is False
    assert checks["stops"]["detail"] == (
        f"{EOT_MISSING}; generation_config.eos_token_id [0] lacks 2 ('<|im_end|>'), which "
        "stage 'sft' declares as EOS"
    )


@pytest.mark.slow
def test_the_recipe_may_set_the_list_itself(qwen, tmp_path):
    # an explicit output.generation_config.eos_token_id is the release's choice
    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0, 2]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0, 2]),
    }
    merged = merge(tmp_path, stages, output={"generation_config": {"eos_token_id": [2, 0]}})
    assert gen_eos(merged) == [2, 0]


def test_declarative_checks(qwen):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(qwen["base"]))
    assert end_of_turn(tok) == ("<|im_end|>", 2)
    assert stop_problems(tok, [2]) == []
    assert stop_problems(tok, []) == [
        "generation_config.eos_token_id is empty: generation has no token to stop at"
    ]
    size = len(tok)
    assert stop_problems(tok, [2, size + 5]) == [
        f"generation_config.eos_token_id [2, {size + 5}] holds {size + 5}, which is not a "
        f"token (vocabulary {size})"
    ]
    word = tok.convert_ids_to_tokens(100)
    assert stop_problems(tok, [2, 100]) == [
        f"generation_config.eos_token_id [2, 100] holds 100 ({word!r}), which is not a "
        "special token: ordinary text would end generation"
    ]
    tok.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    assert stop_problems(tok, [2]) == [
        "the chat template puts no special token after an assistant message: a model tuned "
        "on it has no end-of-turn token to stop at"
    ]
    required = [DeclaredEos("<|im_end|>", "sft", 2), DeclaredEos("<|eot_id|>", "dpo", 7)]
    tok.chat_template = None
    assert stop_problems(tok, [0], required=required) == [
        "generation_config.eos_token_id [0] lacks 2 ('<|im_end|>'), which stage 'sft' "
        "declares as EOS",
        "stage 'dpo' declares EOS '<|eot_id|>' (id 7), which the shipped tokenizer does not have",
    ]


def test_declared_tokens_are_read_by_text(qwen, tmp_path):
    a = instruct_like(qwen["sft"], tmp_path / "a", [0, 2])
    assert declared_eos_tokens({"a": a}) == [
        DeclaredEos("<|endoftext|>", "a", 0),
        DeclaredEos("<|im_end|>", "a", 2),
    ]


def test_generation_stops_reads_the_new_tokens():
    assert generation_stops(lambda ids, n: [5, 6, 2], [1], [0, 2], max_new_tokens=3) == (
        True,
        [5, 6, 2],
    )
    assert generation_stops(lambda ids, n: [5] * n, [1], [0, 2], max_new_tokens=4) == (
        False,
        [5, 5, 5, 5],
    )


@pytest.mark.slow
def test_behavioural_check_is_opt_in_and_exact(qwen, tmp_path, capsys):
    """Random stand-ins never stop: with output.stop_check the merge says so (exit 5)."""
    stages = {
        "sft": instruct_like(qwen["sft"], tmp_path / "sft", [0, 2]),
        "grpo": instruct_like(qwen["grpo"], tmp_path / "grpo", [0, 2]),
    }
    recipe = write_recipe(
        tmp_path / "r.yaml",
        stages,
        LINEAR,
        output={"stop_check": {"prompt": "Which organ makes insulin?", "max_new_tokens": 8}},
    )
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 5
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "merged model failed check 'stops_when_generating': greedy decoding of 'Which organ "
        "makes insulin?' with the chat template gave 8 tokens without an EOS of [0, 2]" in err
    ), err


@pytest.mark.slow
def test_behavioural_check_passes_a_model_that_stops(qwen, tmp_path):
    """A stage whose final norm is zero gives all-zero logits: greedy picks id 0, an EOS."""
    from safetensors.torch import load_file, save_file

    stages = {}
    for name in ("sft", "grpo"):
        folder = instruct_like(qwen[name], tmp_path / name, [0, 2])
        tensors = load_file(str(folder / "model.safetensors"))
        tensors["model.norm.weight"].zero_()
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        stages[name] = folder
    merged = merge(tmp_path, stages, output={"stop_check": True})
    m = json.loads((tmp_path / "w" / "tiny-release" / "manifest.json").read_text())
    assert m["steps"]["merge"]["verification"]["stops_when_generating"] == {
        "ok": True,
        "detail": "greedy answer ended with EOS 0 after 1 token(s)",
    }
    assert merged.is_dir()


def test_a_quant_that_drops_an_eos_id_is_named(llama, tmp_path):
    """Through AWQ (or any HF-format quant) every EOS id of the merged model must be kept."""
    import json
    import shutil

    from medrelease.checks.stops import eos_kept, token_texts

    merged, quant = tmp_path / "merged", tmp_path / "quant"
    shutil.copytree(llama["base"], merged)
    shutil.copytree(llama["base"], quant)
    gen = json.loads((merged / "generation_config.json").read_text())
    first = gen["eos_token_id"] if isinstance(gen["eos_token_id"], int) else gen["eos_token_id"][0]
    second = next(i for i in sorted(token_texts(merged)) if i != first)
    gen["eos_token_id"] = [first, second]
    (merged / "generation_config.json").write_text(json.dumps(gen))
    assert eos_kept(merged, merged) == []
    gen["eos_token_id"] = [first]
    (quant / "generation_config.json").write_text(json.dumps(gen))
    text = token_texts(merged)[second]
    assert eos_kept(merged, quant) == [
        f"EOS id {second} ({text!r}) of the merged model is not in the quant's "
        f"generation_config.eos_token_id [{first}]: generation would not stop there"
    ]
