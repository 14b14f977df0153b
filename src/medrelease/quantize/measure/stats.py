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


def token_stats(ref: Any, ref_lse: Any, got: Any, targets: Any, threads: int = 1) -> TokenStats:
    """The scored rows of one chunk. `ref`/`got`: float32 [rows, vocab] (memory-mapped or fresh
    from llama.cpp); `ref_lse`: float64 log-sum-exp of `ref`'s rows; `targets`: the next token
    of each row. Blocks of rows go to `threads` threads (numpy releases the GIL in its loops),
    as llama-perplexity spreads its KL divergence over worker threads between two chunks.

    In float64, in as few passes over [rows, vocab] as the measures allow (they are the
    check's cost beside llama.cpp's forward pass): with d = ref - got and p the reference's
    probabilities, KL(ref || got) = sum(p * d) + (lse_got - lse_ref) * sum(p), which needs
    neither log-softmax array; sum(p) is 1 unless the other vocabulary is shorter."""
    starts = range(0, ref.shape[0], ROW_BLOCK)

    def block(s: int) -> TokenStats:
        return _block_stats(ref, ref_lse, got, targets, s)

    return TokenStats.concat(_map(block, starts, threads))


def _map(fn: Any, items: range, threads: int) -> list[Any]:
    """fn over items, in order, on up to `threads` threads."""
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="mr-stats") as pool:
        return list(pool.map(fn, items))


def _block_stats(ref: Any, ref_lse: Any, got: Any, targets: Any, s: int) -> TokenStats:
    """`token_stats` of rows s .. s + ROW_BLOCK."""
    import numpy as np

    vocab = min(ref.shape[1], got.shape[1])
    r32, q32 = np.asarray(ref[s : s + ROW_BLOCK]), np.asarray(got[s : s + ROW_BLOCK])
    lse_r = np.asarray(ref_lse[s : s + ROW_BLOCK], dtype=np.float64)
    same = r32.argmax(-1) == q32.argmax(-1)  # float32 -> float64 is exact: same argmax
    q64 = q32.astype(np.float64)
    work = q64.copy()
    lse_q = _lse_in_place(work)  # `work` is then exp(q - max), reused for d below
    r64 = r32[:, :vocab].astype(np.float64)
    d = np.subtract(r64, q64[:, :vocab], out=work[:, :vocab] if vocab == work.shape[1] else None)
    max_diff = float(max(d.max(), -d.min())) if d.size else 0.0
    np.subtract(r64, lse_r[:, None], out=r64)
    p = np.exp(r64, out=r64)
    kld = np.einsum("ij,ij->i", p, d) + (lse_q - lse_r) * p.sum(axis=-1)
    t = np.asarray(targets[s : s + ROW_BLOCK])
    rows = np.arange(len(t))
    ok = t < vocab  # a target outside the shared vocabulary cannot be compared
    lp_r = r32[rows[ok], t[ok]].astype(np.float64) - lse_r[ok]
    lp_q = q32[rows[ok], t[ok]].astype(np.float64) - lse_q[ok]
    return TokenStats(
        kld=kld,
        nll_ref=-lp_r,
        nll_q=-lp_q,
        same=same,
        dp=np.exp(lp_q) - np.exp(lp_r),
        max_diff=max_diff,
    )


def logsumexp_rows(x: Any, threads: int = 1) -> NDArray[Any]:
    """float64 log-sum-exp of each row of a float32 [rows, vocab] array, block by block (by
    `_lse_in_place`, as `_block_stats` on the other side's rows: identical rows, identical
    numbers, so a quant identical to the reference scores a KLD of exactly 0)."""
    import numpy as np

    def block(s: int) -> Any:
        return _lse_in_place(x[s : s + ROW_BLOCK].astype(np.float64))

    parts = _map(block, range(0, x.shape[0], ROW_BLOCK), threads)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def _lse_in_place(b: Any) -> Any:
    """Log-sum-exp of each row of the float64 block `b`, which is left holding exp(b - max)."""
    import numpy as np

    m = b.max(axis=-1)
    b -= m[:, None]
    np.exp(b, out=b)
    return m + np.log(b.sum(axis=-1))
