"""The transformers reference is computed in a thread while llama.cpp converts: it must be the
same reference a sequential run computes, and its errors must still reach the user cleanly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import run_cli
from medrelease.core.console import Reporter
from medrelease.quantize.texts import load_text
from quantize.quanthelpers import RELEASE, quant_release


def test_threaded_reference_equals_sequential(tiny_llama: Path, tmp_path: Path):
    """Same chunks, same dtype, same logits as a plain forward pass per chunk."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.measure.reference import start_reference

    heldout = load_text("heldout", "default", tiny_llama)
    ctx, job = start_reference(
        tiny_llama, "x", tiny_llama, heldout, 64, 2, 0, Reporter(quiet=True), tmp_path, context=48
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


def test_bf16_model_too_big_for_memory_is_streamed_not_copied(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
):
    """Memory at real size: when a float32 copy would not fit, no copy is made at all (not
    even the bf16 weights stay loaded): the reference streams them from disk, in float32."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.core import compute_dtype
    from medrelease.quantize.measure.reference import start_reference

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_llama, folder)
    AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.bfloat16).save_pretrained(
        str(folder)
    )
    monkeypatch.setattr(compute_dtype, "cpu_fast_half", lambda dtype, flags=None: False)
    heldout = load_text("heldout", "default", folder)

    def reference_with(available: int):
        monkeypatch.setattr(compute_dtype, "mem_available", lambda: available)
        ref_dir = Path(tempfile.mkdtemp(dir=tmp_path))
        _, job = start_reference(
            folder, "x", folder, heldout, 32, 2, 0, Reporter(quiet=True), ref_dir
        )
        return job.wait().reference_logits

    roomy, tight = reference_with(64 * 2**30), reference_with(1024)
    assert roomy.dtype == "float32" and "< 50%" in roomy.dtype_reason
    assert tight.dtype == "float32" and "would not fit" in tight.dtype_reason
    assert "read from disk" in tight.dtype_reason
    for a, b in zip(roomy.logits, tight.logits, strict=True):  # the same numbers, either way
        np.testing.assert_array_equal(a, b)


def test_float32_layer_by_layer_equals_a_float32_copy(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
):
    """When only the bf16 weights fit, the reference is float32 computed module by module over
    bf16 weights: the same logits as a float32 copy of those weights, and the weights stay bf16."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.core import compute_dtype
    from medrelease.core.upcast import upcast_per_module
    from medrelease.quantize.measure.reference import start_reference

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_llama, folder)
    AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.bfloat16).save_pretrained(
        str(folder)
    )
    n_params = compute_dtype.weights_info(folder).n_params
    monkeypatch.setattr(compute_dtype, "cpu_fast_half", lambda dtype, flags=None: False)
    # room for the bf16 weights (2 B/param) but not for half of a float32 copy (4 B/param)
    monkeypatch.setattr(compute_dtype, "mem_available", lambda: 3 * n_params)
    heldout = load_text("heldout", "default", folder)
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    _, job = start_reference(folder, "x", folder, heldout, 32, 2, 0, Reporter(quiet=True), ref_dir)
    streamed = job.wait().reference_logits
    assert streamed.dtype == "float32" and "layer by layer" in streamed.dtype_reason
    copy = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    half = upcast_per_module(AutoModelForCausalLM.from_pretrained(str(folder)).eval())
    ids = torch.tensor([streamed.heldout.chunks[0]])
    with torch.no_grad():
        want, got = copy(ids).logits, half(ids).logits
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}  # restored after each call
    from medrelease.quantize.measure.logits import hf_logits

    with torch.no_grad():
        full = hf_logits(copy, streamed.heldout)
    for a, b in zip(streamed.logits, full, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("arch", "block_rows"),
    [("llama", None), ("qwen2", None), ("qwen3", None), ("llama", 7), ("qwen3", 64)],
)
def test_streamed_from_disk_equals_a_float32_copy(
    tiny_families, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, block_rows: Any
):
    """The reference of a model too big for memory: never loaded, each module reads its
    tensors from the files as it runs. Same logits as a float32 copy, bit for bit, tied
    embeddings included, and nothing stays loaded between calls. With `block_rows`, the
    embedding and the LM head are that large: the embedding upcasts only the rows it looks
    up, the head reads and upcasts its rows a block at a time (7 does not divide the tiny
    vocabulary: a short last block). On SmolLM2-135M (49,152 rows, blocks of 8,192) the
    logits were bit-identical to the whole head's, with 85 MB less at the peak."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.core import upcast
    from medrelease.core.upcast import streamed_from_disk

    if block_rows is not None:
        monkeypatch.setattr(upcast, "BLOCK_ROWS", block_rows)

    folder = tmp_path / arch
    shutil.copytree(tiny_families(arch)["sft"], folder)
    AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).save_pretrained(
        str(folder)
    )
    tied = json.loads((folder / "config.json").read_text()).get("tie_word_embeddings", False)
    copy = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    streamed = streamed_from_disk(folder)
    assert streamed is not None
    ids = torch.tensor([[1, 5, 9, 33, 7, 2, 11, 40]])
    with torch.no_grad():
        want, got = copy(ids).logits, streamed(ids).logits
    assert got.dtype == torch.float32, (arch, tied)
    if block_rows is None:
        assert torch.equal(got, want), (arch, tied)
    else:  # the BLAS kernel for 7 columns may round differently from the one for all of them:
        # up to 2.8e-6 on logits of about 1 on an AVX2-only AMD EPYC (float32 sums in another
        # order); bfloat16 rounding, what the check is about, is 4e-3 there
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    assert {p.device.type for p in streamed.parameters()} == {"meta"}
    blocked = [m for m in (streamed.get_input_embeddings(), streamed.get_output_embeddings())
               if "forward" in vars(m)]  # fmt: skip
    assert len(blocked) == (0 if block_rows is None else 2)


@pytest.mark.slow  # runs the converter before the reference reports the problem
def test_short_heldout_text_is_a_clear_input_error(tmp_path: Path, tiny_llama: Path, capsys):
    (tmp_path / "short.txt").write_text("ok")
    recipe = quant_release(
        tmp_path, tiny_llama, {"gguf": {"types": ["Q8_0"]}, "checks": {"heldout": "short.txt"}}
    ).recipe
    assert run_cli("quantize", recipe, "--workdir", tmp_path) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "held-out text 'short.txt'" in err and "fewer than 8 tokens" in err
    leftovers = [p.name for p in (tmp_path / RELEASE).rglob("*") if p.suffix == ".gguf"]
    assert leftovers == []  # no quant and no intermediate left behind
    assert not (tmp_path / RELEASE / "manifest.json").exists()


@pytest.mark.slow  # a conversion first
def test_a_crash_of_the_merged_side_child_is_one_clear_message(
    tmp_path: Path, tiny_llama: Path, capsys, monkeypatch
):
    """The transformers side of a GGUF reference runs in a child (no torch in the quantize
    process): when it dies, the step stops with what died and why, and leaves nothing."""
    from medrelease.quantize.gguf.child import TEST_ABORT_ENV

    recipe = quant_release(tmp_path, tiny_llama, {"gguf": {"types": ["Q8_0"]}}).recipe
    monkeypatch.setenv(TEST_ABORT_ENV, "merged_side")
    assert run_cli("quantize", recipe, "--workdir", tmp_path) == 7
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "transformers on the merged model was killed by SIGABRT" in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "llama.cpp" not in line, line
    leftovers = [p.name for p in (tmp_path / RELEASE).rglob("*") if p.suffix == ".gguf"]
    assert leftovers == [] and not (tmp_path / RELEASE / "manifest.json").exists()


# ---------- the merged side run by the converter's process (quantize/gguf/child.py FollowUp) ----


@pytest.mark.slow  # conversions
def test_the_converter_process_runs_the_follow_up_and_keeps_its_outcome_apart(
    tmp_path: Path, tiny_llama: Path, monkeypatch
):
    """A job handed to `convert` runs in the converter's process once the GGUF is written:
    its result comes back through the job folder, its log holds none of the converter's
    output, and its crash is its own (the conversion stands, the job raises)."""
    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.gguf.child import TEST_ABORT_ENV, FollowUp, LlamaChildError

    out = tmp_path / "out"
    out.mkdir()
    target = out / "m.gguf"  # the follow-up reads the file its process has just written
    then = FollowUp("count_tokens", {"path": str(target), "text": "hello world"}, "count", out)
    (made,) = convert(tiny_llama, out, "m", "f32", None, then=then)
    assert made == target and then.returncode == 0
    assert then.outcome()["n_tokens"] > 1
    log = (then.folder / "log.txt").read_text()
    assert "Model successfully exported" not in log  # the converter's lines stay its own
    then.discard()
    assert not then.folder.exists()

    monkeypatch.setenv(TEST_ABORT_ENV, "count_tokens")
    crashed = FollowUp("count_tokens", {"path": str(target), "text": "x"}, "counting", out)
    (again,) = convert(tiny_llama, out, "m", "f32", None, then=crashed)
    assert again.is_file() and crashed.returncode == -6  # converted; then the job aborted
    with pytest.raises(LlamaChildError, match="counting was killed by SIGABRT"):
        crashed.outcome()
    crashed.discard()


@pytest.mark.slow
def test_a_small_model_s_merged_side_runs_in_the_converter_process(
    tmp_path: Path, tiny_llama: Path, monkeypatch
):
    """Below the overlap size the merged side waits for the converter: it then runs in the
    converter's process (torch and transformers already imported), not in a child of its own;
    and where the converter never gets to it (killed), a child of its own still does it."""
    from medrelease.quantize.gguf import build as gguf
    from medrelease.quantize.gguf import child
    from quantize.quanthelpers import quantize_recorded

    own_children: list[str] = []
    real_job = child._job

    def spy(task, *a, **kw):  # type: ignore[no-untyped-def]
        own_children.append(task)
        return real_job(task, *a, **kw)

    jobs: list[str] = []
    real_write = child._write_job

    def written(job, task, args):  # type: ignore[no-untyped-def]
        jobs.append(task)
        real_write(job, task, args)

    monkeypatch.setattr(child, "_job", spy)
    monkeypatch.setattr(child, "_write_job", written)
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": ["Q8_0"]}).recipe
    result = quantize_recorded(recipe, workdir=tmp_path)
    (q,) = result.record["quants"]
    assert q["accepted"] and q["checks"]["conversion"]["ok"], q
    assert "merged_side" not in own_children and "reference" in own_children, own_children
    # every Python process of a one-quant GGUF release besides the converter's: the F16
    # reference, the quantizer, and one child for the quant's contents, tokens and logits
    assert jobs == ["merged_side", "reference", "quantize", "check"], jobs
    assert {"vocabulary", "contents", "tokenization", "logits"} <= set(q["checks"])

    own_children.clear()
    killer = "import os; os.kill(os.getpid(), 9)"
    monkeypatch.setattr(gguf, "CONVERTER", killer)
    result = quantize_recorded(recipe, workdir=tmp_path, force=True)
    (q,) = result.record["quants"]
    assert q["checks"]["build"]["signal"] == "SIGKILL"
    assert "merged_side" in own_children, own_children  # ran on its own: facts, held-out ids
