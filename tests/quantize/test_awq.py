"""AWQ via llm-compressor on CPU: the folder loads in transformers and tracks the merged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli
from medrelease.core.hashing import sha256_file_uncached
from medrelease.quantize.texts import load_text
from quantize.quanthelpers import RELEASE, quant_release

pytestmark = pytest.mark.slow


def test_awq_quantizes_loads_and_is_checked(tmp_path: Path, tiny_llama: Path, capsys):
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pin = IntermediatesCache.pin_memory
    recipe = quant_release(
        tmp_path, tiny_llama, {"awq": {"num_samples": 8, "max_seq_length": 64, "n_grid": 4}}
    ).recipe
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
    assert group["weights"]["group_size"] == 128  # auto: 128 divides hidden 256 and ffn 512
    # every targeted Linear (2 layers x 7) is stored packed, and transformers loads it so
    assert q["checks"]["contents"]["ok"] and q["checks"]["contents"]["quantized_layers"] == 14
    assert q["checks"]["load"] == {
        "ok": True,
        "detail": "loads in transformers with 14 quantized layers",
    }

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


def test_skipped_layer_rejects_the_quant_naming_it(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """llm-compressor leaving a layer unquantized (built on purpose) is a rejection."""
    from medrelease.quantize.awq import build as awq
    from quantize.test_awq_contents import LAYER, store_unquantized

    real = awq.quantize_awq

    def skipping(merged: Path, out: Path, *args: object, **kwargs: object) -> None:
        real(merged, out, *args, **kwargs)  # type: ignore[arg-type]
        store_unquantized(out, LAYER)

    monkeypatch.setattr(awq, "quantize_awq", skipping)
    recipe = quant_release(
        tmp_path, tiny_llama, {"awq": {"num_samples": 4, "max_seq_length": 32, "n_grid": 3}}
    ).recipe
    capsys.readouterr()
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 5
    (q,) = json.loads(capsys.readouterr().out)["quants"]
    assert q["accepted"] is False
    assert q["reason"] == (
        "contents: 1 of 14 targeted layers stored unquantized (plain `weight`, no "
        f"weight_packed/weight_scale/weight_shape/weight_zero_point): {LAYER}"
    )
    assert not (tmp_path / RELEASE / "quant" / "awq").exists()  # never published
    assert (tmp_path / RELEASE / "quant" / "rejected" / "awq" / "config.json").is_file()

    # the AWQ scheme marked optional: the same rejection leaves it out of the release, exit 0
    optional = ("--set", "quantize.awq.optional=true")
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json", *optional) == 0
    (q,) = json.loads(capsys.readouterr().out)["quants"]
    assert q["accepted"] is False and q["required"] is False
    assert q["rejection"]["check"] == "contents" and LAYER in q["rejection"]["detail"]
    assert not (tmp_path / RELEASE / "quant" / "awq").exists()


def test_shape_problem_stops_quantize_before_any_quant_work(
    tmp_path: Path, tiny_llama: Path, capsys
):
    """A merged model shaped like SmolLM2-135M (hidden 576): GGUF would run first, so the AWQ
    rule must be checked before it; only config.json is needed to know."""
    from quantize.test_awq_preflight import SMOL

    recipe = quant_release(
        tmp_path, tiny_llama, {"gguf": {"types": ["Q8_0"]}, "awq": {"group_size": 128}}
    ).recipe
    merged = tmp_path / RELEASE / "merged"
    (merged / "config.json").write_text(json.dumps(SMOL))
    assert run_cli("quantize", recipe, "-w", tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(quantize.awq.group_size): AWQ group_size 128 does not divide the input features" in err
    assert "set `quantize.awq.group_size: 64`" in err
    assert not (tmp_path / RELEASE / "quant").exists()  # no GGUF (or any) work was started
