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
from medrelease.quantize.measure.limits import Thresholds


@dataclass(frozen=True)
class GgufType:
    name: str
    ftype: str | None  # llama_cpp.LLAMA_FTYPE_* name; None for converter outputs
    bpw: float
    limits: Thresholds  # the default acceptance limits (a recipe overrides them per key)
    imatrix: bool = False  # llama.cpp requires an importance matrix for this type

    @property
    def is_float(self) -> bool:
        return self.ftype is None


def _f(name: str) -> GgufType:
    # F32/F16/BF16 are judged against a reference that may itself run in bf16 (a model whose
    # float32 copy does not fit): measured, that alone moves the mean KLD by ~0.001
    limits = Thresholds(max_kld_mean=0.005, max_kld_p99=0.05, max_ppl_ratio=1.01)
    return GgufType(name, None, 32.0 if name == "F32" else 16.0, limits)


def _q(
    name: str, bpw: float, kld: float, p99: float, ppl: float, imatrix: bool = False
) -> GgufType:
    limits = Thresholds(max_kld_mean=kld, max_kld_p99=p99, max_ppl_ratio=ppl)
    return GgufType(name, f"LLAMA_FTYPE_MOSTLY_{name}", bpw, limits, imatrix)


# Limits: docs/quant-checks.md has the measurements behind them (SmolLM2-135M, llama, and
# Qwen2.5-Coder-0.5B, qwen2; 2,295 scored held-out tokens). A measured type's mean-KLD limit is
# about 2-4x the worst healthy measurement (small models lose more to quantization than 7B
# ones, so a limit set on them holds for larger models), its p99 limit about 3-10x (tails are
# noisier); types not measured here are placed by bits per weight between measured ones.
# Top-1 agreement is reported but not limited by default: on flat distributions it drops
# while KLD stays tiny. A quant of the wrong model scored a mean KLD of 13.9: it fails every type.
TYPES: dict[str, GgufType] = {
    t.name: t
    for t in (
        _f("F32"),
        _f("F16"),
        _f("BF16"),
        _q("Q8_0", 8.5, 0.015, 0.1, 1.03),
        _q("Q6_K", 6.56, 0.04, 0.3, 1.06),
        _q("Q5_K_M", 5.67, 0.2, 1.5, 1.2),
        _q("Q5_K_S", 5.52, 0.2, 1.5, 1.2),
        _q("Q5_1", 6.0, 0.2, 1.5, 1.2),
        _q("Q5_0", 5.5, 0.2, 1.5, 1.2),
        _q("Q4_K_M", 4.89, 0.2, 1.5, 1.2),
        _q("Q4_K_S", 4.58, 0.25, 1.8, 1.25),
        _q("Q4_1", 5.0, 0.45, 2.8, 1.35),
        _q("Q4_0", 4.5, 0.5, 3.0, 1.4),
        _q("IQ4_XS", 4.25, 0.3, 2.0, 1.3),
        _q("IQ4_NL", 4.5, 0.3, 2.0, 1.3),
        _q("Q3_K_L", 4.27, 0.55, 3.5, 1.5),
        _q("Q3_K_M", 3.91, 0.6, 3.8, 1.55),
        _q("Q3_K_S", 3.5, 0.7, 4.2, 1.65),
        _q("IQ3_M", 3.66, 0.65, 4.0, 1.6),
        _q("IQ3_S", 3.44, 0.7, 4.2, 1.65),
        # llama.cpp needs an imatrix for any IQ3_XXS tensor, which both these types contain
        _q("IQ3_XS", 3.3, 0.72, 4.4, 1.7, imatrix=True),
        _q("IQ3_XXS", 3.06, 0.75, 4.6, 1.72, imatrix=True),
        _q("Q2_K", 2.96, 0.8, 5.0, 1.8),
        _q("Q2_K_S", 2.96, 0.9, 5.5, 1.9, imatrix=True),
        _q("IQ2_M", 2.7, 0.9, 5.5, 1.9, imatrix=True),
        _q("IQ2_S", 2.5, 1.0, 6.0, 2.0, imatrix=True),
        _q("IQ2_XS", 2.31, 1.2, 7.0, 2.3, imatrix=True),
        _q("IQ2_XXS", 2.06, 1.5, 8.0, 2.7, imatrix=True),
        _q("IQ1_M", 1.75, 2.5, 12.0, 4.0, imatrix=True),
        _q("IQ1_S", 1.56, 3.0, 14.0, 5.0, imatrix=True),
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
