"""It stops, on every quant: with output.stop_check, each GGUF greedy-decodes a chat answer
through llama.cpp (in a child process) and must end it with an EOS id the release declares.

The model that stops is a tiny qwen2 shaped like an instruct checkpoint (EOS ids [0, 2], as in
tests/merge/test_stops.py) whose final norm is zero: every logit is 0 and greedy picks id 0,
an EOS. A random-weight stand-in never stops: its quant is rejected with the exact reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medrelease.core.console import Reporter
from medrelease.recipe.schema import StopCheck
from quantize.quanthelpers import RELEASE, quant_release

pytestmark = pytest.mark.slow  # llama.cpp converter and children


def instruct_qwen(src: Path, dst: Path, *, stops: bool) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    edits = {
        "tokenizer_config.json": {"eos_token": "<|endoftext|>"},
        "generation_config.json": {"eos_token_id": [0, 2]},
        "config.json": {"eos_token_id": 0},
    }
    jinja = dst / "chat_template.jinja"
    if jinja.is_file():  # one template, where quant_release looks for it (not beside it)
        edits["tokenizer_config.json"]["chat_template"] = jinja.read_text()
        jinja.unlink()
    for name, change in edits.items():
        data = json.loads((dst / name).read_text())
        (dst / name).write_text(json.dumps({**data, **change}, indent=2))
    if stops:
        tensors = load_file(str(dst / "model.safetensors"))
        tensors["model.norm.weight"].zero_()
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def with_stop_check(recipe: Path, setting: object) -> Path:
    data = yaml.safe_load(recipe.read_text())
    data["output"] = {"stop_check": setting}
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    return recipe


def test_every_gguf_of_a_model_that_stops_is_generated_from(tiny_families, tmp_path: Path):
    """Through the CLI in a process of its own, which also shows that a GGUF release's
    quantize process never imports torch: the held-out ids, the tokenizer's facts (probes,
    special tokens, the stop check's prompt) and the conversion check come from a child."""
    model = instruct_qwen(tiny_families("qwen2")["sft"], tmp_path / "m", stops=True)
    quantize = {"gguf": {"types": ["Q8_0", "F16"], "pre_tokenizer": "qwen2"}}
    recipe = with_stop_check(quant_release(tmp_path / "w", model, quantize).recipe, True)
    seen = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "from medrelease.cli import main\n"
        f"rc = main(['quantize', {str(recipe)!r}, '--workdir', {str(tmp_path / 'w')!r}])\n"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        f"open({str(seen)!r}, 'w').write(json.dumps({{'rc': rc, 'loaded': loaded}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(seen.read_text()) == {"rc": 0, "loaded": []}
    manifest = json.loads((tmp_path / "w" / RELEASE / "manifest.json").read_text())
    record = manifest["steps"]["quantize"]
    quants = {q["type"]: q for q in record["quants"]}
    for qtype in ("Q8_0", "F16"):
        assert quants[qtype]["checks"]["stops_when_generating"] == {
            "ok": True,
            "detail": "greedy answer ended with EOS 0 after 1 token(s)",
        }, quants[qtype]
        assert quants[qtype]["checks"]["tokenization"]["ok"], quants[qtype]
        assert quants[qtype]["checks"]["vocabulary"]["ok"], quants[qtype]
        assert quants[qtype]["accepted"], quants[qtype]["reason"]
    assert (tmp_path / "w" / RELEASE / "quant" / "gguf").is_dir()


def test_a_gguf_that_never_stops_is_rejected_with_the_reason(tiny_families, tmp_path: Path):
    from transformers import AutoTokenizer

    from medrelease.quantize.base import QuantContext
    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.gguf.check import gguf_stops

    model = instruct_qwen(tiny_families("qwen2")["sft"], tmp_path / "m", stops=False)
    (gguf,) = convert(model, tmp_path, "q", "f32", None, pre_tokenizer="qwen2")
    ctx = QuantContext(
        model,
        "x",
        model,
        AutoTokenizer.from_pretrained(str(model)),
        [],
        None,
        threads=2,
        seed=0,
        eos_ids=[0, 2],
        stop_check=StopCheck(prompt="Which organ makes insulin?", max_new_tokens=6),
    )
    entry = gguf_stops(gguf, ctx)
    assert entry["ok"] is False
    assert entry["detail"].startswith(
        "greedy decoding of 'Which organ makes insulin?' with the chat template gave 6 tokens "
        "without an EOS of [0, 2] (ends "
    ), entry


def test_the_awq_quant_is_generated_from_too(tiny_families, tmp_path: Path):
    """AWQ through transformers: the same check entry, on the compressed-tensors model."""
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    model = instruct_qwen(tiny_families("qwen2")["sft"], tmp_path / "m", stops=True)
    quantize = {"awq": {"num_samples": 8, "max_seq_length": 64, "n_grid": 4}}
    recipe = with_stop_check(
        quant_release(tmp_path / "w", model, quantize).recipe, {"prompt": "Hi", "max_new_tokens": 4}
    )
    result = quantize_release(
        load_recipe(recipe), workdir=tmp_path / "w", reporter=Reporter(quiet=True)
    )
    (q,) = result.record["quants"]
    assert q["checks"]["stops_when_generating"] == {
        "ok": True,
        "detail": "greedy answer ended with EOS 0 after 1 token(s)",
    }, q
