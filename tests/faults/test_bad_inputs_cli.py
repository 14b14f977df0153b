"""Corrupted stage checkpoints are refused before mergekit runs, through the CLI.

Complements tests/merge/test_bad_inputs.py (truncated file, garbage header, pickle, missing
tokenizer, an Inf weight, a config shrunk below the tokenizer): here a NaN weight, another
model's (larger) tokenizer saved with the checkpoint, a header that lies about a tensor's
size, and a shard index naming a missing shard. Each gives exit 3, one
message naming the stage, no traceback, and no merged/ folder.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import LINEAR, run_cli, write_recipe


def _poison(value: float) -> Callable[[Path], None]:
    def apply(stage: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(stage / "model.safetensors"))
        key = "model.layers.1.mlp.down_proj.weight"
        tensors[key][3, 7] = value
        save_file(tensors, str(stage / "model.safetensors"), metadata={"format": "pt"})

    return apply


def _big_tokenizer(stage: Path) -> None:
    from medrelease.testing.tiny import build_sentencepiece_tokenizer

    for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
        (stage / f).unlink(missing_ok=True)
    build_sentencepiece_tokenizer(stage, 1024)  # another model's tokenizer: 1024 > 512 rows


def _lying_header(stage: Path) -> None:
    path = stage / "model.safetensors"
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [start, end + 4]  # claims 4 more bytes than its shape holds
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def _missing_shard(stage: Path) -> None:
    (stage / "model.safetensors").rename(stage / "model-00001-of-00002.safetensors")
    from safetensors import safe_open

    with safe_open(str(stage / "model-00001-of-00002.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    weight_map = {k: "model-00001-of-00002.safetensors" for k in keys}
    weight_map["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (stage / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan_weights": (_poison(float("nan")), "NaN/Inf values"),
    "tokenizer_of_another_model": (_big_tokenizer, "the tokenizer has"),
    "header_offsets_wrong": (_lying_header, "stage 'sft'"),
    "index_names_missing_shard": (_missing_shard, "missing"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_stage_is_refused_before_merging(tmp_path: Path, llama, capsys, kind, fault_log):
    corrupt, expected = CASES[kind]
    sft = shutil.copytree(llama["sft"], tmp_path / "sft")
    corrupt(sft)
    fault_log.add(f"bad-input:{kind}")
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": sft, "grpo": llama["grpo"]}, LINEAR)
    code = run_cli("merge", recipe, "--workdir", tmp_path / "w")
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err and "internal error" not in err
    assert "stage 'sft'" in err and expected in err, err
    assert "fix:" in err
    assert not (tmp_path / "w" / "tiny-release" / "merged").exists()
