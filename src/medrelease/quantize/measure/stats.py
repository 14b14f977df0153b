"""Per scored token, one runtime's next-token distribution against the reference's.

The numbers behind llama-perplexity's `--kl-divergence` statistics (measure/logits.py turns
them into its summary). Only numpy: the llama.cpp child process (quantize/gguf/child.py)
computes them beside the quant's logits, one chunk at a time, and the step in process (AWQ,
the conversion check) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray

ROW_BLOCK = 64  # rows per float64 block: bounds the temporaries at 64 x vocab x 8 bytes


@dataclass
class TokenStats:
    """One entry per scored token (rows whose target lies outside the shared vocabulary have
    a KLD and a top-1 verdict but no NLL or Δp), and the largest absolute logit difference."""

    kld: NDArray[Any]  # KL(reference || other) in nats
    nll_ref: NDArray[Any]  # -log p_reference(actual next token)
    nll_q: NDArray[Any]  # -log p_other(actual next token)
    same: NDArray[Any]  # both rank the same token first
    dp: NDArray[Any]  # p_other - p_reference of the actual next token
    max_diff: float = 0.0

    @classmethod
    def concat(cls, parts: list[TokenStats]) -> TokenStats:
        import numpy as np

        arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in _ARRAYS}
        return cls(**arrays, max_diff=max((p.max_diff for p in parts), default=0.0))

    def save(self, path: Path) -> None:
        import numpy as np

        with open(path, "wb") as fh:
            np.savez(fh, max_diff=np.float64(self.max_diff), **self._arrays())  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> TokenStats:
        import numpy as np

        with np.load(path) as data:
            arrays = {f.name: data[f.name] for f in _ARRAYS}
            return cls(**arrays, max_diff=float(data["max_diff"]))

    def _arrays(self) -> dict[str, NDArray[Any]]:
        return {f.name: getattr(self, f.name) for f in _ARRAYS}


_ARRAYS = [f for f in fields(TokenStats) if f.name != "max_diff"]


def token_stats(ref: Any, ref_lse: Any, got: Any, targets: Any) -> TokenStats:
    """The scored rows of one chunk. `ref`/`got`: float32 [rows, vocab] (memory-mapped or fresh
    from llama.cpp); `ref_lse`: float64 log-sum-exp of `ref`'s rows; `targets`: the next token
    of each row."""
    import numpy as np

    vocab = min(ref.shape[1], got.shape[1])
    parts = []
    for s in range(0, ref.shape[0], ROW_BLOCK):
        r64 = np.asarray(ref[s : s + ROW_BLOCK], dtype=np.float64)
        q64 = np.asarray(got[s : s + ROW_BLOCK], dtype=np.float64)
        lp_r = r64 - np.asarray(ref_lse[s : s + ROW_BLOCK])[:, None]
        mq = q64.max(axis=-1, keepdims=True)
        lp_q = q64 - (mq + np.log(np.exp(q64 - mq).sum(axis=-1, keepdims=True)))
        lp_r, lp_q = lp_r[:, :vocab], lp_q[:, :vocab]
        t = np.asarray(targets[s : s + ROW_BLOCK])
        rows = np.arange(len(t))
        ok = t < vocab  # a target outside the shared vocabulary cannot be compared
        parts.append(
            TokenStats(
                kld=(np.exp(lp_r) * (lp_r - lp_q)).sum(axis=-1),
                nll_ref=-lp_r[rows[ok], t[ok]],
                nll_q=-lp_q[rows[ok], t[ok]],
                same=r64.argmax(-1) == q64.argmax(-1),
                dp=np.exp(lp_q[rows[ok], t[ok]]) - np.exp(lp_r[rows[ok], t[ok]]),
                max_diff=float(np.abs(r64[:, :vocab] - q64[:, :vocab]).max()),
            )
        )
    return TokenStats.concat(parts)


def logsumexp_rows(x: Any) -> NDArray[Any]:
    """float64 log-sum-exp of each row of a float32 [rows, vocab] array, block by block."""
    import numpy as np

    out = np.empty(x.shape[0], dtype=np.float64)
    for s in range(0, x.shape[0], ROW_BLOCK):
        block = x[s : s + ROW_BLOCK].astype(np.float64)
        m = block.max(axis=-1, keepdims=True)
        out[s : s + ROW_BLOCK] = m[:, 0] + np.log(np.exp(block - m).sum(axis=-1))
    return out
