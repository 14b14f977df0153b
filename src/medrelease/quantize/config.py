"""The `quantize:` section of a recipe (owned by the quantize step).

    quantize:
      gguf:
        types: [Q8_0, Q4_K_M]                  # llama.cpp types (F32/F16/BF16: the converter)
        intermediate: f16                      # high-precision GGUF the quants are made from
        split_max_size: 48G                    # split files above this (the Hub refuses > 50 GB)
        imatrix: {calibration: default}        # llama-imatrix/llama-quantize (`medrelease setup`)
        thresholds: {Q4_K_M: {max_kld_mean: 0.2}}   # keys: quantize/measure/limits.py
        optional: [Q2_K]                       # may be left out when rejected (else: exit 5)
        pre_tokenizer: qwen2                   # for a BPE tokenizer the converter can't name
      awq: {scheme: W4A16_ASYM, calibration: default, num_samples: 64, optional: false}
      checks: {heldout: default, max_tokens: 2048, context: 512, eval: true, min_recovery: 0.95,
               reference: auto}                # gguf (F16 intermediate) | transformers
      executor: ray                            # units on a Ray cluster (docs/cluster.md)

`calibration` / `heldout` are `default` (texts shipped with medrelease) or a recipe-relative
text file. Thresholds not given fall back to per-type defaults (quantize/gguf/quant_types.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from medrelease.quantize.gguf.quant_types import normalize_type
from medrelease.quantize.measure.limits import Thresholds
from medrelease.recipe.base import Section

SIZE_RE = re.compile(r"^(\d+)([KMG]?)$")


def size_to_bytes(text: str) -> int:
    """'48G' -> 48_000_000_000, as llama.cpp's converter counts (powers of 1000)."""
    m = SIZE_RE.match(text.strip().upper())
    if not m:
        raise ValueError(f"{text!r} is not a size like 48G, 500M or 2000000")
    scale = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3}[m.group(2)]
    return int(m.group(1)) * scale


class ImatrixConfig(Section):
    calibration: str = "default"


class GgufConfig(Section):
    types: list[str] = Field(default_factory=lambda: ["Q8_0", "Q4_K_M"])
    intermediate: Literal["f32", "f16", "bf16"] = "f16"
    split_max_size: str = "48G"
    imatrix: ImatrixConfig | None = None
    thresholds: dict[str, Thresholds] = Field(default_factory=dict)
    optional: list[str] = Field(
        default_factory=list,
        description="listed types that may be left out of the release when their checks reject "
        "them (the card says why); every other listed type is required: a rejected one stops "
        "quantize and release with exit 5",
    )
    pre_tokenizer: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description=(
            "llama.cpp pre-tokenizer name (e.g. qwen2, llama-bpe) to use when the converter "
            "does not recognise a BPE tokenizer's hash; the tokenization check verifies it"
        ),
    )

    @field_validator("types", mode="after")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        out = [normalize_type(t) for t in v]
        if not out:
            raise ValueError("list at least one GGUF type, e.g. [Q8_0, Q4_K_M]")
        if len(set(out)) != len(out):
            raise ValueError(f"duplicate GGUF types in {v}")
        return out

    @field_validator("optional", mode="after")
    @classmethod
    def _optional_types(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_type(t) for t in v))

    @field_validator("thresholds", mode="after")
    @classmethod
    def _threshold_keys(cls, v: dict[str, Thresholds]) -> dict[str, Thresholds]:
        return {normalize_type(k): t for k, t in v.items()}

    @field_validator("split_max_size")
    @classmethod
    def _size(cls, v: str) -> str:
        if size_to_bytes(v) <= 0:
            raise ValueError("split_max_size must be positive")
        return v

    @model_validator(mode="after")
    def _thresholds_name_listed_types(self) -> GgufConfig:
        extra = sorted(set(self.thresholds) - set(self.types))
        if extra:
            raise ValueError(f"thresholds for {extra} but types are {self.types}")
        unlisted = [t for t in self.optional if t not in self.types]
        if unlisted:
            raise ValueError(
                f"optional names {unlisted}, which are not listed types ({self.types}): "
                "list them under types, or remove them from optional"
            )
        return self


class AwqConfig(Section):
    scheme: Literal["W4A16_ASYM", "W4A16"] = "W4A16_ASYM"
    calibration: str = "default"
    num_samples: int = Field(default=64, ge=1)
    max_seq_length: int = Field(default=512, ge=16)
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    n_grid: int = Field(
        default=20,
        ge=3,
        description="AWQ scale grid points (speed vs quality; llm-compressor needs >= 3)",
    )
    group_size: Literal["auto", -1, 32, 64, 128] = Field(
        default="auto",
        description=(
            "input columns per scale; auto = the largest of 128, 64, 32 dividing every targeted "
            "layer (vLLM's kernels accept -1 = channelwise, 32, 64, 128; quantize/awq/preflight.py)"
        ),
    )
    thresholds: Thresholds = Thresholds()
    optional: bool = Field(
        default=False,
        description="the AWQ quant may be left out of the release when its checks reject it "
        "(the card says why); by default it is required: a rejected one stops quantize and "
        "release with exit 5",
    )


class ChecksConfig(Section):
    heldout: str = "default"
    max_tokens: int = Field(
        default=2048,
        ge=8,
        description="held-out tokens scored per quant (fewer if the held-out text is shorter)",
    )
    context: int = Field(
        default=512,
        ge=16,
        description="tokens per chunk, each scored from a fresh state on its second half "
        "(llama-perplexity's -c); capped by the model's max_position_embeddings",
    )
    reference: Literal["auto", "gguf", "transformers"] = Field(
        default="auto",
        description="what every quant is compared with: gguf (llama.cpp on the high-precision "
        "GGUF intermediate, checked against transformers on one chunk; llama-perplexity's "
        "convention) | transformers (the merged model on every chunk) | auto (gguf when the "
        "recipe makes GGUFs, else transformers)",
    )
    eval: bool = Field(default=False, description="run the recipe's gate tasks on every quant")
    min_recovery: float = Field(
        default=0.95, gt=0, le=1, description="quant metric / merged metric must reach this"
    )


class QuantizeConfig(Section):
    gguf: GgufConfig | None = None
    awq: AwqConfig | None = None
    checks: ChecksConfig = ChecksConfig()
    # Where the units run changes no number of the record, so it is left out of model_dump
    # (exclude=True): the step's inputs digest, its recorded settings and staleness ignore it.
    executor: Literal["local", "ray"] = Field(
        default="local",
        exclude=True,
        description="where the quant units (one per GGUF type, one for AWQ) run: local (this "
        "process) | ray (a Ray cluster; --executor overrides)",
    )

    @field_validator("gguf", mode="before")
    @classmethod
    def _gguf_shorthand(cls, v: Any) -> Any:
        return {"types": v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _reference_needs_gguf(self) -> QuantizeConfig:
        if self.checks.reference == "gguf" and self.gguf is None:
            raise ValueError(
                "checks.reference: gguf scores the GGUF intermediate, and this quantize "
                "section makes no GGUF: add gguf: types, or use reference: transformers"
            )
        return self

    def reference_source(self) -> str:
        """Where the reference logits come from: `gguf` or `transformers` (checks.reference)."""
        if self.checks.reference == "auto":
            return "gguf" if self.gguf is not None else "transformers"
        return self.checks.reference

    def required(self, family: str, qtype: str) -> bool:
        """Whether a rejected quant of this family and type stops the release (the default)
        or is left out of it (`gguf.optional: [TYPE]`, `awq.optional: true`)."""
        if family == "gguf":
            return self.gguf is None or qtype not in self.gguf.optional
        return self.awq is None or not self.awq.optional
