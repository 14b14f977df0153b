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
from medrelease.quantize.awq.preflight import preflight_merged
from medrelease.quantize.config import AwqConfig

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
