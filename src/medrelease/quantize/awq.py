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
from medrelease.core.errors import InputError
from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.config import AwqConfig, Thresholds

GROUP_SIZE = 128  # the W4A16 presets quantize weights in groups of 128 input columns


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
    from llmcompressor.modifiers.awq import AWQMapping

    return [AWQMapping(smooth, balance) for smooth, balance in EXTRA_AWQ_MAPPINGS[arch]]


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


def check_shapes(config: dict[str, Any], merged: Path) -> None:
    for key in ("hidden_size", "intermediate_size"):
        value = config.get(key)
        if isinstance(value, int) and value % GROUP_SIZE:
            raise InputError(
                f"AWQ W4A16 needs {key} divisible by {GROUP_SIZE}; {merged} has {value}",
                hint="drop quantize.awq for this model, or use GGUF types only",
            )


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
    from llmcompressor.modifiers.awq import AWQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype="auto")
    check_shapes(model.config.to_dict(), merged)
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
    extra = {"mappings": awq_mappings(arch)} if arch in EXTRA_AWQ_MAPPINGS else {}
    recipe = [
        AWQModifier(ignore=list(cfg.ignore), n_grid=cfg.n_grid, **extra),
        QuantizationModifier(scheme=cfg.scheme, targets=["Linear"], ignore=list(cfg.ignore)),
    ]
    torch.manual_seed(seed)
    reporter.info(f"AWQ {cfg.scheme}: calibrating on {len(texts)} samples with llm-compressor")
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


def check_awq(art: QuantArtifact, ctx: QuantContext, limits: Thresholds) -> None:
    """Load the folder back with transformers (compressed-tensors) and compare with the merged."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.checks import (
        check_tokenization_hf,
        hf_logits,
        judge_logits,
        logit_measures,
    )

    try:
        quant_tok = AutoTokenizer.from_pretrained(str(art.entry))
        model = AutoModelForCausalLM.from_pretrained(str(art.entry))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        art.checks["load"] = {
            "ok": False,
            "detail": f"transformers cannot load the AWQ folder ({exc})",
        }
        return
    art.checks["tokenization"] = check_tokenization_hf(ctx.tokenizer, quant_tok)
    measures = logit_measures(
        ctx.reference_logits, hf_logits(model, ctx.heldout_ids), ctx.heldout_ids
    )
    art.checks["logits"] = judge_logits(measures, limits)
    if ctx.eval is not None and all(c.get("ok") for c in art.checks.values()):
        from lm_eval.models.huggingface import HFLM

        art.checks["eval"] = ctx.eval.run(HFLM(pretrained=model, tokenizer=quant_tok, device="cpu"))


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


DEFAULT_LIMITS = {
    "W4A16_ASYM": Thresholds(max_ppl_ratio=1.10),
    "W4A16": Thresholds(max_ppl_ratio=1.12),
}
