"""AWQ via llm-compressor on CPU: the folder loads in transformers and tracks the merged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quanthelpers import RELEASE, make_release

from helpers import run_cli
from medrelease.core.hashing import sha256_file_uncached
from medrelease.quantize.texts import load_text

pytestmark = pytest.mark.slow


def test_awq_quantizes_loads_and_is_checked(tmp_path: Path, tiny_llama: Path, capsys):
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pin = IntermediatesCache.pin_memory
    recipe = make_release(
        tmp_path, tiny_llama, {"awq": {"num_samples": 8, "max_seq_length": 64, "n_grid": 4}}
    )
    capsys.readouterr()  # drop what importing llm-compressor above printed
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 0
    # stdout is the JSON summary only (llm-compressor logs to stdout unless silenced)
    (q,) = json.loads(capsys.readouterr().out)["quants"]
    assert IntermediatesCache.pin_memory is pin  # our CPU workaround was scoped to oneshot
    assert (q["family"], q["type"]) == ("awq", "W4A16_ASYM")
    assert q["accepted"], q["reason"]
    assert q["checks"]["tokenization"]["ok"]

    folder = tmp_path / RELEASE / "quant" / "awq"
    config = json.loads((folder / "config.json").read_text())
    qcfg = config["quantization_config"]
    assert qcfg["quant_method"] == "compressed-tensors"
    assert qcfg["format"] == "pack-quantized"
    assert "lm_head" in qcfg["ignore"]
    (group,) = qcfg["config_groups"].values()
    assert group["weights"]["num_bits"] == 4 and group["weights"]["symmetric"] is False

    # independent of our checks: transformers loads the folder; logits close to the merged's
    merged = tmp_path / RELEASE / "merged"
    tok = AutoTokenizer.from_pretrained(str(merged))
    ids = torch.tensor([tok(load_text("heldout", "default", merged).text)["input_ids"][:96]])
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(str(folder))(ids).logits.float()
    diff = (ref - got).abs()
    assert 0 < diff.mean().item() < 0.5, diff.mean().item()  # quantized, but close
    nll = torch.nn.functional.cross_entropy
    ppl_ratio = np.exp((nll(got[0, :-1], ids[0, 1:]) - nll(ref[0, :-1], ids[0, 1:])).item())
    assert ppl_ratio < 1.10
    assert q["checks"]["logits"]["ok"] and q["checks"]["logits"]["value"] < 1.10

    # manifest agrees with the files on disk
    for rel, rec in q["files"].items():
        assert rec["sha256"] == sha256_file_uncached(tmp_path / RELEASE / rel)
    assert {f"quant/awq/{p.name}" for p in folder.iterdir()} == set(q["files"])
