"""The checks of an AWQ quant: every targeted layer quantized in the folder (contents.py), then
loaded back with transformers (compressed-tensors) and measured against the merged model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medrelease.quantize.awq.preflight import preflight_merged
from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.config import AwqConfig
from medrelease.quantize.measure.limits import Thresholds

# Same measures as the GGUF checks, calibrated on real models (docs/quant-checks.md, "AWQ";
# bench/awq_calibration.py). SmolLM2-135M: W4A16_ASYM KLD 0.154 (p99 0.86, PPL 1.225),
# between its Q4_K_M (0.052) and Q4_0 (0.27), so at Q4_1's limits; W4A16 (symmetric) 0.266
# (p99 1.34, PPL 1.354), its Q4_0's envelope, so at Q4_0's KLD limits with PPL room above
# the measured 1.354 (the earlier guesses, 0.2/1.5/1.2 and 0.3/2.0/1.3, rejected both).
DEFAULT_LIMITS = {
    "W4A16_ASYM": Thresholds(max_kld_mean=0.45, max_kld_p99=2.8, max_ppl_ratio=1.35),
    "W4A16": Thresholds(max_kld_mean=0.5, max_kld_p99=3.0, max_ppl_ratio=1.5),
}


def check_awq(art: QuantArtifact, ctx: QuantContext, limits: Thresholds, cfg: AwqConfig) -> None:
    """Check the folder holds every targeted layer quantized (awq_contents.py), then load it
    back with transformers (compressed-tensors) and compare with the merged model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.awq.contents import check_contents
    from medrelease.quantize.measure.judge import judge_logits
    from medrelease.quantize.measure.logits import hf_logits, logit_measures
    from medrelease.quantize.measure.tokenization import check_tokenization_hf

    plan = preflight_merged(ctx.merged, list(cfg.ignore), cfg.group_size)
    assert plan is not None, f"no config.json in {ctx.merged}"
    art.notes += [n for n in plan.notes if n not in art.notes]
    art.checks["contents"] = check_contents(art.entry, plan, cfg.scheme)
    if not art.checks["contents"]["ok"]:
        return  # a skipped layer is a rejection naming it; no point measuring logits
    try:
        quant_tok = AutoTokenizer.from_pretrained(str(art.entry))
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(art.entry), output_loading_info=True)
        model, info = loaded
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        art.checks["load"] = {
            "ok": False,
            "detail": f"transformers cannot load the AWQ folder ({exc})",
        }
        return
    art.checks["load"] = load_check(model, info, plan.names)
    if not art.checks["load"]["ok"]:
        return
    art.checks["tokenization"] = check_tokenization_hf(ctx.hf_tokenizer(), quant_tok)
    art.checks["stops"] = _stops_check(ctx.merged, art.entry)
    if ctx.stop_check is not None:  # output.stop_check: a greedy chat answer must end
        from medrelease.checks.stops import stops_when_generating, transformers_generate

        art.checks["stops_when_generating"] = stops_when_generating(
            transformers_generate(model, ctx.eos_ids), quant_tok, ctx.eos_ids, ctx.stop_check
        )
    measures = logit_measures(
        ctx.reference_logits, hf_logits(model, ctx.heldout_ids), ctx.heldout_ids
    )
    art.checks["logits"] = judge_logits(measures, limits)
    if ctx.eval is not None and all(c.get("ok") for c in art.checks.values()):
        from lm_eval.models.huggingface import HFLM

        art.checks["eval"] = ctx.eval.run(HFLM(pretrained=model, tokenizer=quant_tok, device="cpu"))


def _stops_check(merged: Path, folder: Path) -> dict[str, Any]:
    """Every EOS id of the merged model is kept by the quant (a multi-token list included)."""
    from medrelease.checks.stops import eos_kept, generation_eos_ids

    problems = eos_kept(merged, folder)
    if problems:
        return {"ok": False, "detail": problems[0], "problems": problems}
    return {"ok": True, "detail": f"EOS ids {generation_eos_ids(merged)} kept"}


def load_check(model: Any, info: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """transformers loaded the folder as a quantized model: the quantization config is set,
    no tensor was missing or left over (a missing one would be initialised at random), and
    every targeted layer carries its quantization scheme."""
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    modules = dict(model.named_modules())
    plain = [n for n in names if getattr(modules.get(n), "quantization_scheme", None) is None]
    problems = []
    if getattr(model.config, "quantization_config", None) is None:
        problems.append("transformers loaded it without a quantization_config")
    if missing:
        problems.append(f"missing tensors (initialised at random): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"tensors transformers did not use: {', '.join(unexpected[:5])}")
    if plain:
        problems.append(
            f"{len(plain)} of {len(names)} targeted layers loaded without a quantization "
            f"scheme: {', '.join(plain[:5])}"
        )
    if problems:
        return {"ok": False, "detail": "; ".join(problems)}
    return {"ok": True, "detail": f"loads in transformers with {len(names)} quantized layers"}
