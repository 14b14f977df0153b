"""Every bad input gets one clear message, a documented non-zero exit, and no merged/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import LINEAR, run_cli, write_recipe


def copy_stage(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_merge(tmp_path: Path, stages: dict, merge: dict = LINEAR, *extra: str) -> int:
    recipe = write_recipe(tmp_path / "r.yaml", stages, merge)
    return run_cli("merge", recipe, "--workdir", tmp_path / "w", *extra)


def merged_exists(tmp_path: Path) -> bool:
    return (tmp_path / "w" / "tiny-release" / "merged").exists()


def stderr_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_malformed_yaml(tmp_path, capsys):
    p = tmp_path / "r.yaml"
    p.write_text("release:\n  name: x\n stages: [\n")
    assert run_cli("merge", p, "--workdir", tmp_path / "w") == 2
    err = stderr_of(capsys)
    assert "malformed YAML" in err and "r.yaml:3" in err
    assert not merged_exists(tmp_path)


def test_unknown_key(tmp_path, capsys, llama):
    recipe = write_recipe(
        tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR, sede=3
    )
    assert run_cli("merge", recipe, "--workdir", tmp_path / "w") == 2
    err = stderr_of(capsys)
    assert "unknown key 'sede'" in err and "did you mean 'seed'" in err
    assert not merged_exists(tmp_path)


def test_unknown_stage_name(tmp_path, capsys, llama):
    merge = {**LINEAR, "models": [{"model": "sft"}, {"model": "gpro"}]}
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": llama["grpo"]}, merge) == 2
    err = stderr_of(capsys)
    assert "'gpro' is not a stage" in err and "did you mean 'grpo'" in err
    assert not merged_exists(tmp_path)


def test_missing_stage_folder(tmp_path, capsys, llama):
    code = run_merge(tmp_path, {"sft": llama["sft"], "grpo": str(tmp_path / "nope")})
    assert code == 3
    err = stderr_of(capsys)
    assert "stage 'grpo'" in err and "does not exist" in err
    assert not merged_exists(tmp_path)


def test_mismatched_architectures(tmp_path, capsys, llama, tiny_families):
    qwen = tiny_families("qwen2")
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": qwen["grpo"]}) == 3
    err = stderr_of(capsys)
    assert "different architectures" in err and "LlamaForCausalLM" in err
    assert not merged_exists(tmp_path)


def test_mismatched_layer_count(tmp_path, capsys, llama):
    grpo = copy_stage(llama["grpo"], tmp_path / "grpo")
    cfg = json.loads((grpo / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (grpo / "config.json").write_text(json.dumps(cfg))
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": grpo}) == 3
    err = stderr_of(capsys)
    assert "num_hidden_layers" in err and "slices" in err


def test_truncated_safetensors(tmp_path, capsys, llama):
    grpo = copy_stage(llama["grpo"], tmp_path / "grpo")
    weights = grpo / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": grpo}) == 3
    err = stderr_of(capsys)
    assert "stage 'grpo'" in err and "truncated" in err
    assert not merged_exists(tmp_path)


def test_garbage_safetensors_header(tmp_path, capsys, llama):
    grpo = copy_stage(llama["grpo"], tmp_path / "grpo")
    (grpo / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": grpo}) == 3
    assert "not valid JSON" in stderr_of(capsys)


def _pickle_stage(src: Path, dst: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    torch.save(state, dst / "pytorch_model.bin")
    return dst


def test_pickle_only_checkpoint_is_refused(tmp_path, capsys, llama):
    grpo = _pickle_stage(llama["grpo"], tmp_path / "grpo")
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": grpo}) == 3
    err = stderr_of(capsys)
    assert "pickle" in err and "allow_pickle: true" in err
    assert not merged_exists(tmp_path)


@pytest.mark.slow
def test_pickle_allowed_when_opted_in(tmp_path, capsys, llama):
    grpo = _pickle_stage(llama["grpo"], tmp_path / "grpo")
    stages = {"sft": llama["sft"], "grpo": {"path": str(grpo), "allow_pickle": True}}
    assert run_merge(tmp_path, stages) == 0
    assert merged_exists(tmp_path)
    manifest = json.loads((tmp_path / "w" / "tiny-release" / "manifest.json").read_text())
    assert any("pickle" in w for w in manifest["steps"]["merge"]["warnings"])


def test_missing_tokenizer(tmp_path, capsys, llama):
    sft = copy_stage(llama["sft"], tmp_path / "sft")
    for f in ("tokenizer.json", "tokenizer.model"):
        (sft / f).unlink(missing_ok=True)
    assert run_merge(tmp_path, {"sft": sft, "grpo": llama["grpo"]}) == 3
    err = stderr_of(capsys)
    assert "no tokenizer files" in err and "tokenizer_from" in err


@pytest.mark.slow
def test_output_folder_already_present(tmp_path, capsys, llama):
    stages = {"sft": llama["sft"], "grpo": llama["grpo"]}
    assert run_merge(tmp_path, stages) == 0
    merged = tmp_path / "w" / "tiny-release" / "merged"
    before = (merged / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert run_merge(tmp_path, stages) == 2
    err = stderr_of(capsys)
    assert "already exists" in err and "--force" in err
    assert (merged / "model.safetensors").stat().st_mtime_ns == before
    assert run_merge(tmp_path, stages, LINEAR, "--force") == 0


def test_not_enough_disk(tmp_path, capsys, llama, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": llama["grpo"]}) == 7
    err = stderr_of(capsys)
    assert "not enough free disk" in err and "--workdir" in err
    assert not merged_exists(tmp_path)


def test_bad_stage_override(tmp_path, capsys, llama):
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    assert run_cli("merge", recipe, "--stage", "nope") == 2
    assert "NAME=SOURCE" in stderr_of(capsys)


def test_json_error_output(tmp_path, capsys, llama):
    code = run_merge(
        tmp_path, {"sft": llama["sft"], "grpo": str(tmp_path / "nope")}, LINEAR, "--json"
    )
    assert code == 3
    data = json.loads(capsys.readouterr().out)
    assert data["error"] == "input" and data["exit_code"] == 3 and "grpo" in data["message"]


def test_nan_weights_detected_before_merging(tmp_path, capsys, llama):
    from safetensors.torch import load_file, save_file

    grpo = copy_stage(llama["grpo"], tmp_path / "grpo")
    state = load_file(str(grpo / "model.safetensors"))
    state["model.layers.1.mlp.down_proj.weight"][3, 5] = float("inf")
    save_file(state, str(grpo / "model.safetensors"), metadata={"format": "pt"})
    assert run_merge(tmp_path, {"sft": llama["sft"], "grpo": grpo}) == 3
    err = stderr_of(capsys)
    assert "stage 'grpo'" in err and "model.layers.1.mlp.down_proj.weight" in err
    assert "NaN/Inf" in err
    assert not merged_exists(tmp_path)


def test_tokenizer_larger_than_vocab(tmp_path, capsys, llama, tiny_families):
    sft = copy_stage(llama["sft"], tmp_path / "sft")
    cfg = json.loads((sft / "config.json").read_text())
    cfg["vocab_size"] = 100  # the tokenizer has 512 tokens
    (sft / "config.json").write_text(json.dumps(cfg))
    grpo = copy_stage(llama["grpo"], tmp_path / "grpo")
    (grpo / "config.json").write_text(json.dumps(cfg))
    assert run_merge(tmp_path, {"sft": sft, "grpo": grpo}) == 3
    err = stderr_of(capsys)
    assert "512 tokens" in err and "100 rows" in err
