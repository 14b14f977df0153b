"""The GGUF types medrelease can produce, with the defaults each is judged by.

Float types (F32/F16/BF16) come straight from llama.cpp's converter; the others from
`llama_model_quantize` on the high-precision intermediate. `bpw` (bits per weight, from
llama.cpp's quantize tool) only estimates sizes for the disk check and the split decision.
Types that llama.cpp refuses to make without an importance matrix are marked `imatrix`
(checked against llama-cpp-python 0.3.36: tests/quantize/test_imatrix.py tries every type).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class GgufType:
    name: str
    ftype: str | None  # llama_cpp.LLAMA_FTYPE_* name; None for converter outputs
    bpw: float
    max_ppl_ratio: float
    max_abs_logit_diff: float | None = None
    min_top1_agreement: float | None = None
    imatrix: bool = False  # llama.cpp requires an importance matrix for this type

    @property
    def is_float(self) -> bool:
        return self.ftype is None


def _q(
    name: str, bpw: float, ppl: float, top1: float | None = None, imatrix: bool = False
) -> GgufType:
    return GgufType(name, f"LLAMA_FTYPE_MOSTLY_{name}", bpw, ppl, None, top1, imatrix)


TYPES: dict[str, GgufType] = {
    t.name: t
    for t in (
        GgufType("F32", None, 32.0, 1.001, 1e-2, 0.999),
        GgufType("F16", None, 16.0, 1.005, 0.1, 0.99),
        GgufType("BF16", None, 16.0, 1.01, None, 0.98),
        _q("Q8_0", 8.5, 1.01),
        _q("Q6_K", 6.56, 1.02),
        _q("Q5_K_M", 5.67, 1.04),
        _q("Q5_K_S", 5.52, 1.05),
        _q("Q5_1", 6.0, 1.05),
        _q("Q5_0", 5.5, 1.05),
        _q("Q4_K_M", 4.89, 1.08),
        _q("Q4_K_S", 4.58, 1.10),
        _q("Q4_1", 5.0, 1.12),
        _q("Q4_0", 4.5, 1.12),
        _q("IQ4_XS", 4.25, 1.10),
        _q("IQ4_NL", 4.5, 1.10),
        _q("Q3_K_L", 4.27, 1.20),
        _q("Q3_K_M", 3.91, 1.25),
        _q("Q3_K_S", 3.5, 1.35),
        _q("IQ3_M", 3.66, 1.30),
        _q("IQ3_S", 3.44, 1.35),
        # llama.cpp needs an imatrix for any IQ3_XXS tensor, which both these types contain
        _q("IQ3_XS", 3.3, 1.40, imatrix=True),
        _q("IQ3_XXS", 3.06, 1.45, imatrix=True),
        _q("Q2_K", 2.96, 1.60),
        _q("Q2_K_S", 2.96, 1.70, imatrix=True),
        _q("IQ2_M", 2.7, 1.80, imatrix=True),
        _q("IQ2_S", 2.5, 2.00, imatrix=True),
        _q("IQ2_XS", 2.31, 2.20, imatrix=True),
        _q("IQ2_XXS", 2.06, 2.50, imatrix=True),
        _q("IQ1_M", 1.75, 4.00, imatrix=True),
        _q("IQ1_S", 1.56, 5.00, imatrix=True),
    )
}


def normalize_type(name: str) -> str:
    """'q4_k_m' -> 'Q4_K_M'; unknown names raise ValueError with a suggestion."""
    key = str(name).strip().upper()
    if key in TYPES:
        return key
    close = difflib.get_close_matches(key, list(TYPES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown GGUF type {name!r}{hint} (known: {', '.join(TYPES)})")


def gguf_type(name: str) -> GgufType:
    return TYPES[normalize_type(name)]


def ftype_value(t: GgufType) -> int:
    import llama_cpp

    assert t.ftype is not None
    return int(getattr(llama_cpp, t.ftype))
