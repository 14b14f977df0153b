"""Reproduce commands in a published card name repos and stages, never our local folders."""

from __future__ import annotations

from pathlib import Path

import medrelease
from medrelease.card.context import portable_reproduce

REV = "0123456789abcdef0123456789abcdef01234567"


def test_local_paths_become_repo_ids_and_placeholders(tmp_path: Path):
    pkg = Path(medrelease.__file__).resolve().parent
    report = {
        "models": {
            "merged": {"kind": "merged", "path": "merged"},
            "sft": {"kind": "stage", "source": "/data/ckpt/sft"},
            "base": {"kind": "stage", "source": "Qwen/Qwen3-4B-Base"},
        }
    }
    commands = [
        f"lm_eval --model hf --model_args pretrained=/w/build/rel/merged,dtype=float32 "
        f"--tasks t --include_path {tmp_path}/tasks --batch_size 8",
        "lm_eval --model hf --model_args pretrained=/data/ckpt/sft --tasks t",
        f"lm_eval --model hf --model_args pretrained=/root/.cache/huggingface/hub/"
        f"models--Qwen--Qwen3-4B-Base/snapshots/{REV} --tasks t "
        f"--include_path {pkg}/data/tasks/medical_safety",
    ]
    out = portable_reproduce(commands, report, "org/rel", tmp_path)
    assert "pretrained=org/rel,dtype=float32" in out[0] and "--include_path tasks " in out[0]
    assert "pretrained=<sft>" in out[1]
    assert f"pretrained=Qwen/Qwen3-4B-Base,revision={REV}" in out[2]
    assert "--include_path <medrelease>/data/tasks/medical_safety" in out[2]
    assert not any(s in " ".join(out) for s in ("/w/build", "/data/ckpt", "/root/.cache", str(pkg)))
