"""The transformers reference is computed in a thread while llama.cpp converts: it must be the
same reference a sequential run computes, and its errors must still reach the user cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quanthelpers import RELEASE, make_release

from helpers import run_cli
from medrelease.core.console import Reporter
from medrelease.quantize.texts import load_text


def test_threaded_reference_equals_sequential(tiny_llama: Path):
    """Same chunks, same dtype, same logits as a plain forward pass per chunk."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.reference import start_reference

    heldout = load_text("heldout", "default", tiny_llama)
    ctx, job = start_reference(
        tiny_llama, "x", tiny_llama, heldout, 64, 2, 0, Reporter(quiet=True), context=48
    )
    reference = job.wait().reference_logits
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    ids = tok(heldout.text, add_special_tokens=True)["input_ids"]
    # 48-token chunks, the last 23 positions of each scored: 3 chunks for 64 scored tokens
    chunks = [ids[i * 48 : (i + 1) * 48] for i in range(3)]
    for c in chunks:
        c[0] = tok.bos_token_id  # each chunk starts like a document (llama-perplexity)
    assert ctx.heldout_ids.chunks == chunks and list(ctx.heldout_ids) == [
        t for c in chunks for t in c
    ]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    assert reference.dtype == "float32"  # the tiny model's own dtype
    for chunk, got in zip(chunks, reference.logits, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([chunk])).logits[0].numpy()
        assert got.dtype == np.float32 and got.shape == (23, logits.shape[1])
        np.testing.assert_allclose(got, logits[24:47], rtol=0, atol=1e-5)
    assert job.seconds is not None and job.seconds > 0


def test_bf16_model_too_big_for_float32_is_scored_in_bf16(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
):
    """Memory at real size: when a float32 copy would not fit, no float32 copy is made."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.core import compute_dtype
    from medrelease.quantize.reference import start_reference

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_llama, folder)
    AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.bfloat16).save_pretrained(
        str(folder)
    )
    monkeypatch.setattr(compute_dtype, "cpu_fast_half", lambda dtype, flags=None: False)
    heldout = load_text("heldout", "default", folder)

    def reference_with(available: int):
        monkeypatch.setattr(compute_dtype, "mem_available", lambda: available)
        _, job = start_reference(folder, "x", folder, heldout, 32, 2, 0, Reporter(quiet=True))
        return job.wait().reference_logits

    roomy, tight = reference_with(64 * 2**30), reference_with(1024)
    assert roomy.dtype == "float32" and "< 50%" in roomy.dtype_reason
    assert tight.dtype == "bfloat16" and "would not fit" in tight.dtype_reason
    # bf16 compute stays close to float32 compute (the float types' limits allow for it)
    from medrelease.quantize.checks import logit_measures

    assert logit_measures(roomy, list(tight.logits))["kld_mean"] < 0.05


@pytest.mark.slow  # runs the converter before the reference reports the problem
def test_short_heldout_text_is_a_clear_input_error(tmp_path: Path, tiny_llama: Path, capsys):
    (tmp_path / "short.txt").write_text("ok")
    recipe = make_release(
        tmp_path,
        tiny_llama,
        {"gguf": {"types": ["Q8_0"]}, "checks": {"heldout": "short.txt"}},
    )
    assert run_cli("quantize", recipe, "--workdir", tmp_path) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "held-out text 'short.txt'" in err and "fewer than 8 tokens" in err
    leftovers = [p.name for p in (tmp_path / RELEASE).rglob("*") if p.suffix == ".gguf"]
    assert leftovers == []  # no quant and no intermediate left behind
    assert not (tmp_path / RELEASE / "manifest.json").exists()
