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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.reference import start_reference

    heldout = load_text("heldout", "default", tiny_llama)
    ctx, job = start_reference(tiny_llama, "x", tiny_llama, heldout, 64, 2, 0, Reporter(quiet=True))
    reference = job.wait().reference_logits
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    ids = tok(heldout.text, add_special_tokens=True)["input_ids"][:64]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    assert ctx.heldout_ids == ids
    assert reference.dtype == np.float32
    assert np.array_equal(reference, logits)
    assert job.seconds is not None and job.seconds > 0


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
