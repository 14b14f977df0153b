"""The GGUF types medrelease can produce, with the defaults each is judged by.

Float types (F32/F16/BF16) come straight from llama.cpp's converter; the others from
`llama_model_quantize` on the high-precision intermediate. `bpw` (bits per weight, from
llama.cpp's quantize tool) only estimates sizes for the disk check and the split decision.
Types that llama.cpp refuses to make without an importance matrix are marked `imatrix`
(checked against llama-cpp-python 0.3.36: tests/quantize/test_imatrix.py tries every type).
"""

from __future__ import annotations

from dataclasses import dataclass

from medrelease.core.suggest import did_you_mean
from medrelease.quantize.config import Thresholds


@dataclass(frozen=True)
class GgufType:
    name: str
    ftype: str | None  # llama_cpp.LLAMA_FTYPE_* name; None for converter outputs
    bpw: float
    max_kld_mean: float  # mean KL(merged || quant) per scored token (nats)
    max_kld_p99: float  # 99th percentile of the per-token KLD
    max_ppl_ratio: float
    min_top1_agreement: float | None = None
    imatrix: bool = False  # llama.cpp requires an importance matrix for this type
    max_abs_logit_diff: float | None = None  # never a default: see Thresholds

    @property
    def is_float(self) -> bool:
        return self.ftype is None

    def thresholds(self) -> Thresholds:
        """The default acceptance limits of this type (a recipe overrides them per key)."""
        return Thresholds(
            max_kld_mean=self.max_kld_mean,
            max_kld_p99=self.max_kld_p99,
            max_ppl_ratio=self.max_ppl_ratio,
            min_top1_agreement=self.min_top1_agreement,
        )


def _f(name: str, kld: float, p99: float, ppl: float, top1: float) -> GgufType:
    return GgufType(name, None, 32.0 if name == "F32" else 16.0, kld, p99, ppl, top1)


def _q(
    name: str,
    bpw: float,
    kld: float,
    p99: float,
    ppl: float,
    top1: float | None = None,
    imatrix: bool = False,
) -> GgufType:
    return GgufType(name, f"LLAMA_FTYPE_MOSTLY_{name}", bpw, kld, p99, ppl, top1, imatrix)


# Limits: docs/quant-checks.md has the measurements behind each (real llama and qwen2 models,
# 2,048 scored held-out tokens). Measured types sit at about 3x the worst measured mean KLD;
# unmeasured types are interpolated by bits per weight. A quant of the wrong model or a
# broken one lands at KLD > 1, far above every limit.
TYPES: dict[str, GgufType] = {
    t.name: t
    for t in (
        _f("F32", 0.002, 0.02, 1.005, 0.99),
        _f("F16", 0.002, 0.02, 1.005, 0.99),
        _f("BF16", 0.005, 0.05, 1.01, 0.98),
        _q("Q8_0", 8.5, 0.01, 0.1, 1.02, 0.95),
        _q("Q6_K", 6.56, 0.03, 0.3, 1.04, 0.92),
        _q("Q5_K_M", 5.67, 0.06, 0.6, 1.06),
        _q("Q5_K_S", 5.52, 0.07, 0.7, 1.07),
        _q("Q5_1", 6.0, 0.07, 0.7, 1.07),
        _q("Q5_0", 5.5, 0.08, 0.8, 1.08),
        _q("Q4_K_M", 4.89, 0.15, 1.5, 1.15),
        _q("Q4_K_S", 4.58, 0.18, 1.8, 1.18),
        _q("Q4_1", 5.0, 0.2, 2.0, 1.2),
        _q("Q4_0", 4.5, 0.25, 2.5, 1.25),
        _q("IQ4_XS", 4.25, 0.18, 1.8, 1.18),
        _q("IQ4_NL", 4.5, 0.18, 1.8, 1.18),
        _q("Q3_K_L", 4.27, 0.35, 3.0, 1.35),
        _q("Q3_K_M", 3.91, 0.4, 3.5, 1.4),
        _q("Q3_K_S", 3.5, 0.55, 4.5, 1.55),
        _q("IQ3_M", 3.66, 0.45, 4.0, 1.45),
        _q("IQ3_S", 3.44, 0.5, 4.5, 1.5),
        # llama.cpp needs an imatrix for any IQ3_XXS tensor, which both these types contain
        _q("IQ3_XS", 3.3, 0.55, 5.0, 1.55, imatrix=True),
        _q("IQ3_XXS", 3.06, 0.6, 5.0, 1.6, imatrix=True),
        _q("Q2_K", 2.96, 0.9, 7.0, 2.0),
        _q("Q2_K_S", 2.96, 1.0, 8.0, 2.2, imatrix=True),
        _q("IQ2_M", 2.7, 1.0, 8.0, 2.2, imatrix=True),
        _q("IQ2_S", 2.5, 1.2, 9.0, 2.5, imatrix=True),
        _q("IQ2_XS", 2.31, 1.4, 10.0, 2.8, imatrix=True),
        _q("IQ2_XXS", 2.06, 1.6, 11.0, 3.2, imatrix=True),
        _q("IQ1_M", 1.75, 2.5, 14.0, 5.0, imatrix=True),
        _q("IQ1_S", 1.56, 3.0, 16.0, 6.0, imatrix=True),
    )
}


def normalize_type(name: str) -> str:
    """'q4_k_m' -> 'Q4_K_M'; unknown names raise ValueError with a suggestion."""
    key = str(name).strip().upper()
    if key in TYPES:
        return key
    hint = did_you_mean(key, TYPES)
    raise ValueError(f"unknown GGUF type {name!r}{hint} (known: {', '.join(TYPES)})")


def gguf_type(name: str) -> GgufType:
    return TYPES[normalize_type(name)]


def ftype_value(t: GgufType) -> int:
    import llama_cpp

    assert t.ftype is not None
    return int(getattr(llama_cpp, t.ftype))
