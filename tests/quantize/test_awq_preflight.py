"""AWQ preflight: the group size fits every targeted layer, checked from config.json alone.

Configs are shaped like real models (SmolLM2-135M: hidden 576, 3 KV heads of 64) and built
on the meta device, so no weights exist and each check takes seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli, write_recipe
from medrelease.core.errors import RecipeError

# SmolLM2-135M's shapes: 576 % 128 = 64, so the W4A16 presets' group size 128 does not fit
SMOL = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "tie_word_embeddings": True,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
}  # fmt: skip


def config(tmp: Path, name: str, **changes: Any) -> Path:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**SMOL, **changes}))
    return folder / "config.json"


def test_auto_picks_the_largest_group_vllm_runs_that_divides_every_layer(tmp_path: Path) -> None:
    from medrelease.quantize.awq.preflight import awq_preflight

    plan = awq_preflight(config(tmp_path, "smol"), ["lm_head"], "auto")
    assert plan.group_size == 64
    assert len(plan.layers) == 30 * 7  # q k v o gate up down per layer; lm_head ignored
    assert "lm_head" not in plan.names
    by_name = {x.name: x for x in plan.layers}
    assert (by_name["model.layers.0.self_attn.k_proj"].in_features,
            by_name["model.layers.0.self_attn.k_proj"].out_features) == (576, 192)  # fmt: skip
    assert by_name["model.layers.29.mlp.down_proj"].in_features == 1536
    # vLLM's Marlin tile rule (in % 128, out % 64) is reported, not an error
    assert plan.notes and "Marlin" in plan.notes[0] and "180 layer(s)" in plan.notes[0]

    qwen = awq_preflight(
        config(tmp_path, "q", hidden_size=1024, intermediate_size=3072, num_attention_heads=16,
               num_key_value_heads=8, head_dim=64),
        ["lm_head"], "auto",
    )  # fmt: skip
    assert qwen.group_size == 128 and qwen.notes == []


def test_explicit_group_that_does_not_divide_names_layers_and_the_fix(tmp_path: Path) -> None:
    from medrelease.quantize.awq.preflight import awq_preflight

    with pytest.raises(RecipeError) as err:
        awq_preflight(config(tmp_path, "smol"), ["lm_head"], 128)
    assert err.value.exit_code == 2
    assert str(err.value) == (
        "quantize.awq.group_size: AWQ group_size 128 does not divide the input features of "
        "180 targeted layer(s): model.layers.0.self_attn.q_proj (576), "
        "model.layers.0.self_attn.k_proj (576), model.layers.0.self_attn.v_proj (576) "
        "and 177 more"
    )
    assert err.value.hint == (
        "set `quantize.awq.group_size: 64` (the largest vLLM-supported size that divides every "
        "targeted layer) or `auto`"
    )
    assert awq_preflight(config(tmp_path, "smol"), ["lm_head"], 32).group_size == 32
    assert awq_preflight(config(tmp_path, "smol"), ["lm_head"], -1).group_size == -1


def test_no_vllm_group_fits_says_channelwise_or_ignore(tmp_path: Path) -> None:
    from medrelease.quantize.awq.preflight import awq_preflight

    odd = config(tmp_path, "odd", hidden_size=400, num_attention_heads=5, num_key_value_heads=5,
                 num_hidden_layers=2,
                 head_dim=80, intermediate_size=1024)  # fmt: skip
    with pytest.raises(RecipeError) as err:
        awq_preflight(odd, ["lm_head"], "auto")
    assert str(err.value).startswith(
        "quantize.awq.group_size: AWQ: no group size vLLM runs (128, 64, 32) divides the input "
        "features of 12 targeted layer(s): model.layers.0.self_attn.q_proj (400)"
    )
    assert "group_size: -1" in (err.value.hint or "") and "ignore" in (err.value.hint or "")
    # ignoring the attention and gate/up layers (in_features 400) leaves only down_proj (1024)
    plan = awq_preflight(odd, ["lm_head", "re:.*self_attn.*", "re:.*(gate|up)_proj$"], "auto")
    assert plan.group_size == 128 and {x.in_features for x in plan.layers} == {1024}


def test_ignoring_every_layer_is_refused(tmp_path: Path) -> None:
    from medrelease.quantize.awq.preflight import awq_preflight

    with pytest.raises(RecipeError, match="AWQ would quantize no layer"):
        awq_preflight(config(tmp_path, "smol"), ["Linear"], "auto")


def _recipe(tmp_path: Path, group_size: Any) -> Path:
    stage = config(tmp_path, "stage").parent  # a stage folder with only config.json
    awq: dict[str, Any] = {"num_samples": 4}
    if group_size is not None:
        awq["group_size"] = group_size
    return write_recipe(
        tmp_path / "recipe.yaml",
        {"base": stage},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
        quantize={"awq": awq},
    )


def test_validate_fails_in_seconds_from_the_stage_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, 128)
    start = time.monotonic()
    assert run_cli("validate", recipe) == 2
    took = time.monotonic() - start
    err = " ".join(capsys.readouterr().err.split())
    line = 1 + recipe.read_text().splitlines().index("    group_size: 128")
    assert (
        f"{recipe}:{line} (quantize.awq.group_size): AWQ group_size 128 does not divide the input "
        "features of 180 targeted layer(s)"
    ) in err, err
    assert "set `quantize.awq.group_size: 64`" in err
    assert "Traceback" not in err
    assert took < 60, took  # config.json on the meta device: no weights, no GGUF work first


def test_validate_reports_the_chosen_group_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("validate", _recipe(tmp_path, None), "--json") == 0
    awq = json.loads(capsys.readouterr().out)["awq"]
    assert (awq["checked"], awq["stage"], awq["group_size"], awq["layers"]) == (
        True, "base", 64, 210,
    )  # fmt: skip


def test_validate_without_local_config_defers_to_quantize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {"base": "someorg/not-in-cache"},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
        quantize={"awq": {"group_size": 128}},
    )
    assert run_cli("validate", recipe, "--json") == 0
    awq = json.loads(capsys.readouterr().out)["awq"]
    assert awq["checked"] is False and "checked when `medrelease quantize` starts" in awq["detail"]


def test_unknown_architecture_is_an_input_error(tmp_path: Path) -> None:
    from medrelease.core.errors import InputError
    from medrelease.quantize.awq.preflight import awq_preflight

    path = config(tmp_path, "odd", model_type="medicaloracle")
    with pytest.raises(InputError) as err:
        awq_preflight(path, ["lm_head"], "auto")
    assert err.value.exit_code == 3
    assert str(err.value).startswith(f"cannot read {path} for the AWQ preflight (")
