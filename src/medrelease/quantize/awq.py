"""AWQ backend: llm-compressor's `oneshot` with AWQ smoothing + W4A16 weight quantization.

Output is a compressed-tensors folder (what vLLM and transformers load). Calibration texts
are rendered with the model's chat template, the format it sees in use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.quantize.awq_preflight import preflight_merged
from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.config import AwqConfig, Thresholds

# Architectures llm-compressor 0.14 has no AWQ mapping for (its default assumes a gated
# llama MLP). Arcee (AFM) has a ReLU² MLP with only up_proj/down_proj: the up->down pair is
# left out because scaling through ReLU² cannot be undone exactly.
EXTRA_AWQ_MAPPINGS: dict[str, list[tuple[str, list[str]]]] = {
    "ArceeForCausalLM": [
        ("re:.*input_layernorm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
        ("re:.*v_proj$", ["re:.*o_proj$"]),
        ("re:.*post_attention_layernorm$", ["re:.*up_proj$"]),
    ],
}


def awq_mappings(arch: str) -> list[Any]:
    from llmcompressor.modifiers.transform.awq import AWQMapping

    return [AWQMapping(smooth, balance) for smooth, balance in EXTRA_AWQ_MAPPINGS[arch]]


def quant_scheme(scheme: str, group_size: int) -> Any:
    """compressed-tensors' preset (W4A16_ASYM / W4A16) with the chosen group size
    (-1: channelwise, one scale per output row)."""
    from compressed_tensors.quantization import QuantizationArgs, preset_name_to_scheme

    preset = preset_name_to_scheme(scheme, ["Linear"])
    assert preset.weights is not None
    args = preset.weights.model_dump()
    if group_size == -1:
        args.update(strategy="channel", group_size=None)
    else:
        args.update(strategy="group", group_size=group_size)
    return preset.model_copy(update={"weights": QuantizationArgs.model_validate(args)})


@contextlib.contextmanager
def cpu_safe_pinning() -> Iterator[None]:
    """Skip llm-compressor's memory pinning on machines without an accelerator.

    llm-compressor 0.14 pins cached activations so later copies to the GPU are asynchronous;
    without an accelerator `Tensor.pin_memory()` raises. Pinning changes no values, so on
    CPU we skip it, for the duration of our `oneshot` call only.
    """
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory

    def no_pinning(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = no_pinning  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def quantize_awq(
    merged: Path,
    out: Path,
    cfg: AwqConfig,
    calibration_texts: list[str],
    *,
    seed: int,
    reporter: Reporter,
) -> None:
    """Calibrate and quantize the merged model into `out` (a folder that does not exist yet)."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plan = preflight_merged(merged, list(cfg.ignore), cfg.group_size)  # computed at step start
    assert plan is not None, f"no config.json in {merged}"
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype="auto")
    texts = (calibration_texts * (cfg.num_samples // max(len(calibration_texts), 1) + 1))[
        : cfg.num_samples
    ]
    encoded = tokenizer(
        texts, add_special_tokens=False, truncation=True, max_length=cfg.max_seq_length
    )
    dataset = Dataset.from_dict(
        {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    )
    arch = (model.config.architectures or [""])[0]
    mappings = awq_mappings(arch) if arch in EXTRA_AWQ_MAPPINGS else None  # None: its own
    # AWQ smooths, then one QuantizationModifier quantizes with the scheme at the group size
    # the preflight chose (llm-compressor 0.14's split API; its `modifiers.awq.AWQModifier`
    # is a deprecated shim that adds a second QuantizationModifier of its own)
    recipe = [
        AWQModifier(n_grid=cfg.n_grid, mappings=mappings),
        QuantizationModifier(
            config_groups={"group_0": quant_scheme(cfg.scheme, plan.group_size)},
            ignore=list(cfg.ignore),
        ),
    ]
    torch.manual_seed(seed)
    reporter.info(
        f"AWQ {cfg.scheme} (group size {plan.group_size}, {len(plan.layers)} layers): "
        f"calibrating on {len(texts)} samples with llm-compressor"
    )
    with cpu_safe_pinning():
        oneshot(
            model=model,
            processor=tokenizer,  # type: ignore[arg-type]
            dataset=dataset,
            recipe=recipe,
            max_seq_length=cfg.max_seq_length,
            num_calibration_samples=len(texts),
            output_dir=None,
        )
    out.mkdir(parents=True, exist_ok=True)
    import warnings

    with warnings.catch_warnings():  # "offloaded modules" is about GPU offload: not our case
        warnings.filterwarnings("ignore", message=".*offloaded modules.*")
        model.save_pretrained(str(out), save_compressed=True)
    tokenizer.save_pretrained(str(out))
    generation = merged / "generation_config.json"
    if generation.is_file() and not (out / "generation_config.json").is_file():
        (out / "generation_config.json").write_bytes(generation.read_bytes())


def check_awq(art: QuantArtifact, ctx: QuantContext, limits: Thresholds, cfg: AwqConfig) -> None:
    """Check the folder holds every targeted layer quantized (awq_contents.py), then load it
    back with transformers (compressed-tensors) and compare with the merged model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.awq_contents import check_contents
    from medrelease.quantize.checks import (
        check_tokenization_hf,
        hf_logits,
        judge_logits,
        logit_measures,
    )

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
    art.checks["tokenization"] = check_tokenization_hf(ctx.tokenizer, quant_tok)
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


@contextlib.contextmanager
def quiet_llmcompressor() -> Iterator[None]:
    """llm-compressor logs through loguru (to stdout, where --json goes) and tqdm; our Reporter
    speaks for it unless --debug."""
    import os

    if os.environ.get("MEDRELEASE_DEBUG"):
        yield
        return
    old = os.environ.get("LLM_COMPRESSOR_LOG_DISABLED")
    os.environ["LLM_COMPRESSOR_LOG_DISABLED"] = "true"  # read once, when llmcompressor loads
    try:
        import llmcompressor  # noqa: F401
    finally:
        if old is None:
            os.environ.pop("LLM_COMPRESSOR_LOG_DISABLED", None)
        else:
            os.environ["LLM_COMPRESSOR_LOG_DISABLED"] = old
    import tqdm
    from loguru import logger

    original_init = tqdm.tqdm.__init__

    def silent_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original_init(self, *args, **kwargs)

    tqdm.tqdm.__init__ = silent_init
    for name in ("llmcompressor", "compressed_tensors"):
        logger.disable(name)
    try:
        yield
    finally:
        tqdm.tqdm.__init__ = original_init
        for name in ("llmcompressor", "compressed_tensors"):
            logger.enable(name)


# Same measures as the GGUF checks, calibrated on real models (docs/quant-checks.md, "AWQ";
# bench/awq_calibration.py). SmolLM2-135M: W4A16_ASYM KLD 0.154 (p99 0.86, PPL 1.225),
# between its Q4_K_M (0.052) and Q4_0 (0.27), so at Q4_1's limits; W4A16 (symmetric) 0.266
# (p99 1.34, PPL 1.354), its Q4_0's envelope, so at Q4_0's KLD limits with PPL room above
# the measured 1.354 (the earlier guesses, 0.2/1.5/1.2 and 0.3/2.0/1.3, rejected both).
DEFAULT_LIMITS = {
    "W4A16_ASYM": Thresholds(max_kld_mean=0.45, max_kld_p99=2.8, max_ppl_ratio=1.35),
    "W4A16": Thresholds(max_kld_mean=0.5, max_kld_p99=3.0, max_ppl_ratio=1.5),
}
