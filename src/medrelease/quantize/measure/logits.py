"""Held-out logits: the quant's next-token distributions against the merged model's.

On held-out text (the same token ids in both runtimes), the quant's perplexity and next-token
logits are measured as llama-perplexity's `--kl-divergence` does; quantize/measure/judge.py
compares the measures with the limits of the quant's type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.quantize.measure.stats import TokenStats, logsumexp_rows, token_stats

# Measured as llama.cpp's `llama-perplexity --kl-divergence` does (tools/perplexity/perplexity.cpp):
# the held-out tokens are cut into chunks of `context` tokens, each evaluated from a fresh state
# with its first token replaced by BOS when the vocabulary adds one; only the second half of
# each chunk is scored (positions context/2 .. context-2 predicting the next token), so every
# scored token has at least context/2 tokens before it. Per scored token: KL(merged || quant)
# of the next-token distributions, whether both put the same token on top, and both models'
# negative log-likelihood of the actual next token. Reported like llama.cpp: mean KLD, its
# 99th percentile (linear interpolation), "same top p" and PPL(Q)/PPL(base).

DEFAULT_CONTEXT = 512  # llama-perplexity's default -c
MIN_SCORED = 8


class HeldOutIds(list[int]):
    """The flat held-out ids (all chunks, in order) that also know their chunking."""

    chunks: list[list[int]]
    first: int  # index of the first scored position in every chunk

    @property
    def n_scored(self) -> int:
        return sum(len(c) - 1 - self.first for c in self.chunks)

    def scored_rows(self, chunk: list[int]) -> slice:
        return slice(self.first, len(chunk) - 1)


def held_out_ids(tokenizer: Any, text: str, max_tokens: int | None = None) -> list[int]:
    """The held-out text as the merged tokenizer encodes it (BOS included when it adds one)."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < MIN_SCORED:
        raise ValueError(f"held-out text gives fewer than {MIN_SCORED} tokens")
    return ids


def chunk_context(config: dict[str, Any], context: int = DEFAULT_CONTEXT) -> int:
    """Chunk length: `context`, but never past the positions the model was trained on."""
    limit = config.get("max_position_embeddings")
    text_cfg = config.get("text_config")
    if limit is None and isinstance(text_cfg, dict):
        limit = text_cfg.get("max_position_embeddings")
    return min(context, int(limit)) if isinstance(limit, int) and limit > 0 else context


def held_out_chunks(
    ids: list[int], context: int, max_tokens: int, bos_id: int | None = None
) -> HeldOutIds:
    """Cut `ids` into chunks of `context` tokens until `max_tokens` tokens are scored.

    `bos_id`: the BOS id when the tokenizer adds one; it replaces each chunk's first token
    (as llama-perplexity does), so every chunk starts like a document. A text shorter than one
    chunk becomes a single chunk of its own length."""
    n_ctx = min(context, len(ids))
    first = n_ctx // 2
    per_chunk = n_ctx - 1 - first
    if per_chunk < 1 or len(ids) < MIN_SCORED:
        raise ValueError(f"held-out text gives fewer than {MIN_SCORED} tokens")
    wanted = -(-max_tokens // per_chunk)  # ceil
    n_chunks = max(1, min(len(ids) // n_ctx, wanted))
    chunks = []
    for i in range(n_chunks):
        chunk = list(ids[i * n_ctx : (i + 1) * n_ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        chunks.append(chunk)
    out = HeldOutIds(t for c in chunks for t in c)
    out.chunks, out.first = chunks, first
    return out


def bos_added(tokenizer: Any, ids: list[int]) -> int | None:
    """The BOS id if the tokenizer put one in front of the text, else None."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None and ids and ids[0] == bos else None


@dataclass
class Reference:
    """The merged model's logits on the scored rows of every chunk (float32, one copy)."""

    heldout: HeldOutIds
    logits: list[Any]  # per chunk: float32 [len(chunk) - 1 - first, vocab]
    lse: list[Any]  # per chunk: float64 log-sum-exp of each row (log-probs = logits - lse)
    dtype: str = "float32"  # what the forward pass computed in
    dtype_reason: str = ""

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.logits))


def hf_logits(model: Any, ids: list[int]) -> Any:
    """Per-chunk logits of the scored rows for a `HeldOutIds`; all rows for a plain id list.

    Only the scored rows go through the LM head (`logits_to_keep`) and are kept, in float32:
    a 152k vocabulary at 2,048 scored tokens is 1.2 GB, held once."""
    import inspect

    import torch

    if not isinstance(ids, HeldOutIds):
        with torch.no_grad():
            out = model(torch.tensor([ids]))
        return out.logits[0].float().numpy()
    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    result = []
    for chunk in ids.chunks:
        n_keep = len(chunk) - ids.first  # rows first .. end; the last row predicts nothing
        kwargs = {"logits_to_keep": n_keep} if keeps else {}
        with torch.no_grad():
            logits = model(torch.tensor([chunk]), **kwargs).logits[0]
        rows = logits[-n_keep:][:-1] if keeps else logits[ids.scored_rows(chunk)]
        result.append(rows.float().numpy().copy())
        del logits, rows
    return result


def gguf_logits(gguf: Any, ids: list[int], threads: int = 1) -> Any:
    """All rows for a plain id list; per-chunk rows (each from a fresh state) for HeldOutIds.

    `gguf`: the GGUF's path (computed in a child process: quantize/gguf/child.py, raises
    LlamaChildError on a crash), or an open llama_cpp.Llama (in process, for tests)."""
    import numpy as np

    if isinstance(gguf, str | Path):
        from medrelease.quantize.gguf.child import gguf_chunk_logits

        if isinstance(ids, HeldOutIds):
            chunks = [list(c) for c in ids.chunks]
            return gguf_chunk_logits(Path(gguf), chunks, threads, first=ids.first)
        return gguf_chunk_logits(Path(gguf), [list(ids)], threads)[0]
    if isinstance(ids, HeldOutIds):
        return [gguf_logits(gguf, list(chunk)) for chunk in ids.chunks]
    gguf.reset()
    gguf.eval(ids)
    return np.array(gguf.scores[: len(ids), :], dtype=np.float32)


def reference_from_logits(
    heldout: HeldOutIds, chunk_logits: list[Any], dtype: str = "float32", reason: str = ""
) -> Reference:
    """A Reference from per-chunk logits (all rows of each chunk, or only the scored ones)."""
    logits, lse = [], []
    for chunk, arr in zip(heldout.chunks, chunk_logits, strict=True):
        rows = _scored(arr, chunk, heldout)
        logits.append(rows)
        lse.append(logsumexp_rows(rows))
    return Reference(heldout, logits, lse, dtype, reason)


def _scored(arr: Any, chunk: list[int], heldout: HeldOutIds) -> Any:
    """The scored rows of one chunk's logits, given all rows or only the scored ones."""
    import numpy as np

    n = len(chunk) - 1 - heldout.first
    if arr.shape[0] == len(chunk):
        arr = arr[heldout.scored_rows(chunk)]
    if arr.shape[0] != n:
        raise ValueError(f"logits for a chunk of {len(chunk)} tokens have {arr.shape[0]} rows")
    return np.ascontiguousarray(arr, dtype=np.float32)


def chunk_targets(chunk: list[int], heldout: HeldOutIds) -> list[int]:
    """The next token of each scored row of `chunk`."""
    return list(chunk[heldout.first + 1 :])


def logit_measures(reference: Reference, got: list[Any], ids: Any = None) -> dict[str, Any]:
    """KLD (mean, p99, median, max), same-top-token rate and PPL ratio of `got` vs `reference`.

    `got`: per chunk, the other runtime's float32 logits for that chunk (all rows, or only the
    scored ones). `ids` is accepted for callers of the earlier signature and not used."""
    import numpy as np

    if not isinstance(got, list):
        raise TypeError(
            "logit_measures takes per-chunk logits (one array per held-out chunk, each from a "
            "fresh state), not one pass over the concatenated ids"
        )
    held = reference.heldout
    if len(got) != len(held.chunks):
        raise ValueError(f"{len(got)} chunks of logits for {len(held.chunks)} held-out chunks")
    per_chunk = [
        token_stats(ref, lse, _scored(arr, chunk, held), np.asarray(chunk_targets(chunk, held)))
        for chunk, ref, lse, arr in zip(
            held.chunks, reference.logits, reference.lse, got, strict=True
        )
    ]
    return summarize(TokenStats.concat(per_chunk), reference)


def summarize(stats: TokenStats, reference: Reference) -> dict[str, Any]:
    """The measures llama-perplexity reports, from every scored token's `token_stats`."""
    import numpy as np

    held = reference.heldout
    kld, n_ref, n_q = stats.kld, stats.nll_ref, stats.nll_q
    ppl_ref, ppl_q = math.exp(float(n_ref.mean())), math.exp(float(n_q.mean()))
    n = len(kld)
    stderr = float(kld.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {
        "kld_mean": round(float(kld.mean()), 8),
        "kld_mean_stderr": round(stderr, 8),
        "kld_p99": round(float(np.percentile(kld, 99.0)), 8),
        "kld_median": round(float(np.median(kld)), 8),
        "kld_max": round(float(kld.max()), 8),
        "top1_agreement": round(float(stats.same.mean()), 6),
        "ppl_merged": round(ppl_ref, 6),
        "ppl_quant": round(ppl_q, 6),
        "ppl_ratio": round(math.exp(float(n_q.mean() - n_ref.mean())), 6),
        "delta_p_rms": round(float(np.sqrt(np.mean(stats.dp**2))), 6),
        "max_abs_logit_diff": round(stats.max_diff, 6),
        "tokens": n,
        "chunks": len(held.chunks),
        "context": len(held.chunks[0]),
        "reference_dtype": reference.dtype,
        "reference_dtype_reason": reference.dtype_reason,
    }


def gguf_measures(
    gguf: Path, reference: Reference, reference_dir: Path, threads: int
) -> dict[str, Any]:
    """`logit_measures` of a GGUF against the reference saved in `reference_dir`, computed in
    the llama.cpp child chunk by chunk, as llama-perplexity --kl-divergence does: neither
    process ever holds more than one chunk of the quant's logits, and the parent none."""
    from medrelease.quantize.gguf.child import gguf_compare

    return summarize(gguf_compare(gguf, reference_dir, threads), reference)
