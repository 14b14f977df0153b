"""Checks every quant must pass against the merged model before it is accepted.

tokenization: the quant's runtime tokenizer gives the same ids as the merged HF tokenizer on
  fixed probes (BOS/EOS handling, special tokens, chat template output, odd spacing, unicode).
logits: on held-out text (the same token ids in both runtimes), the quant's perplexity and
  next-token logits stay within the limits for its type.

Each check returns a JSON-able dict with `ok` and a one-line `detail` a user can act on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medrelease.quantize.config import Thresholds
from medrelease.quantize.texts import PROBE_CHAT, PROBE_TEXTS

MAX_SHOWN = 3


# ---------- tokenization ----------


def hf_probe_ids(tokenizer: Any) -> dict[str, list[int]]:
    """What the merged tokenizer makes of each probe: the reference for every runtime."""
    out: dict[str, list[int]] = {}
    for i, text in enumerate(PROBE_TEXTS):
        out[f"text{i}"] = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    specials = [t for t in (tokenizer.bos_token, tokenizer.eos_token) if t]
    if specials:
        text = f"{specials[0]}Hello {specials[-1]} world"
        out["special_tokens"] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template(
            list(PROBE_CHAT), tokenize=False, add_generation_prompt=True
        )
        out["chat_template"] = list(tokenizer(str(chat), add_special_tokens=False)["input_ids"])
    return out


def _probe_texts(tokenizer: Any) -> dict[str, tuple[str, bool]]:
    """probe name -> (text, add special tokens?) matching hf_probe_ids."""
    out = {f"text{i}": (t, True) for i, t in enumerate(PROBE_TEXTS)}
    specials = [t for t in (tokenizer.bos_token, tokenizer.eos_token) if t]
    if specials:
        out["special_tokens"] = (f"{specials[0]}Hello {specials[-1]} world", False)
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template(
            list(PROBE_CHAT), tokenize=False, add_generation_prompt=True
        )
        out["chat_template"] = (str(chat), False)
    return out


# Probes where SentencePiece runtimes legitimately disagree: llama.cpp (like HF's legacy mode
# and sentencepiece itself) puts a space prefix at the start of text and after every special
# token; transformers' non-legacy Llama tokenizer does not. For SPM vocabularies these are
# reported as warnings, for every other vocabulary they must match like the rest.
SPM_ADVISORY = ("text1", "special_tokens", "chat_template")


def _compare(
    ref: dict[str, list[int]],
    got: dict[str, list[int]],
    runtime: str,
    advisory: tuple[str, ...] = (),
) -> dict[str, Any]:
    mismatches: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for name, ids in ref.items():
        other = got.get(name)
        if other != ids:
            item = {"probe": name, "merged": ids[:12], runtime: (other or [])[:12]}
            item["why"] = _explain(ids, other or [])
            (warnings if name in advisory else mismatches).append(item)
    result: dict[str, Any] = {"ok": not mismatches, "probes": len(ref)}
    if warnings:
        result["warnings"] = warnings[:MAX_SHOWN]
        result["warning"] = (
            f"{len(warnings)} probe(s) differ only where SentencePiece runtimes disagree on "
            f"space prefixes ({', '.join(w['probe'] for w in warnings)}): prompts that start "
            "with a space or follow a special token tokenize differently in llama.cpp"
        )
    if not mismatches:
        result["detail"] = f"{len(ref) - len(warnings)}/{len(ref)} probes identical"
        return result
    first = mismatches[0]
    result["detail"] = (
        f"{len(mismatches)}/{len(ref)} probes differ from the merged tokenizer "
        f"(first: {first['probe']}{': ' + first['why'] if first['why'] else ''})"
    )
    result["mismatches"] = mismatches[:MAX_SHOWN]
    return result


def _explain(ref: list[int], got: list[int]) -> str:
    if ref and ref[1:] == got:
        return "the merged tokenizer adds a BOS token the quant's runtime does not"
    if got and got[1:] == ref:
        return "the quant's runtime adds a BOS token the merged tokenizer does not"
    return ""


def check_tokenization_gguf(llm: Any, tokenizer: Any) -> dict[str, Any]:
    """llama.cpp's tokenizer (as the GGUF metadata configures it) vs the merged HF tokenizer."""
    ref = hf_probe_ids(tokenizer)
    got: dict[str, list[int]] = {}
    for name, (text, add_special) in _probe_texts(tokenizer).items():
        got[name] = list(llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))
    spm = llm.metadata.get("tokenizer.ggml.model") == "llama"
    result = _compare(ref, got, "gguf", SPM_ADVISORY if spm else ())
    ids = {
        "bos": (tokenizer.bos_token_id, llm.token_bos()),
        "eos": (tokenizer.eos_token_id, llm.token_eos()),
    }
    bad = [f"{k} {hf} vs {gg}" for k, (hf, gg) in ids.items() if hf is not None and hf != gg]
    if bad:
        result["ok"] = False
        result["detail"] = "special token ids differ (merged vs gguf): " + ", ".join(bad)
    tmpl_hf = getattr(tokenizer, "chat_template", None)
    tmpl_gguf = llm.metadata.get("tokenizer.chat_template")
    if tmpl_hf and tmpl_gguf != tmpl_hf:
        result["ok"] = False
        result["detail"] = "the GGUF's chat template differs from the merged model's"
    return result


def check_tokenization_hf(tokenizer: Any, quant_tokenizer: Any) -> dict[str, Any]:
    """Tokenizer files shipped with an HF-format quant (AWQ) vs the merged tokenizer."""
    ref = hf_probe_ids(tokenizer)
    got = hf_probe_ids(quant_tokenizer)
    result = _compare(ref, got, "quant")
    if getattr(tokenizer, "chat_template", None) != getattr(quant_tokenizer, "chat_template", None):
        result["ok"] = False
        result["detail"] = "the quant's chat template differs from the merged model's"
    return result


# ---------- logits ----------


def held_out_ids(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])[:max_tokens]
    if len(ids) < 8:
        raise ValueError("held-out text gives fewer than 8 tokens")
    return ids


def hf_logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        out = model(torch.tensor([ids]))
    return out.logits[0].float().numpy()


def open_gguf(path: Path, n_ctx: int, threads: int) -> Any:
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=max(n_ctx, 64),
        n_batch=max(n_ctx, 64),
        n_ubatch=max(n_ctx, 64),
        logits_all=True,
        n_gpu_layers=0,
        n_threads=threads,
        verbose=False,
    )


def gguf_logits(llm: Any, ids: list[int]) -> Any:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids), :], dtype=np.float32)


def logit_measures(ref: Any, got: Any, ids: list[int]) -> dict[str, float]:
    import numpy as np

    vocab = min(ref.shape[1], got.shape[1])
    ref, got = ref[:, :vocab].astype(np.float64), got[:, :vocab].astype(np.float64)

    def nll(logits: Any) -> float:
        lp = logits[:-1] - _logsumexp(logits[:-1])
        return float(-np.mean(lp[np.arange(len(ids) - 1), ids[1:]]))

    ppl_ref, ppl_q = math.exp(nll(ref)), math.exp(nll(got))
    return {
        "ppl_merged": round(ppl_ref, 6),
        "ppl_quant": round(ppl_q, 6),
        "ppl_ratio": round(ppl_q / ppl_ref, 6),
        "max_abs_logit_diff": float(np.max(np.abs(ref - got))),
        "mean_abs_logit_diff": float(np.mean(np.abs(ref - got))),
        "top1_agreement": float(np.mean(ref.argmax(-1) == got.argmax(-1))),
        "tokens": len(ids),
    }


def _logsumexp(x: Any) -> Any:
    import numpy as np

    m = x.max(axis=-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


LIMITS = (
    ("max_ppl_ratio", "ppl_ratio", "<="),
    ("max_abs_logit_diff", "max_abs_logit_diff", "<="),
    ("min_top1_agreement", "top1_agreement", ">="),
)


def judge_logits(measures: dict[str, float], limits: Thresholds) -> dict[str, Any]:
    """Compare measures with limits; the record names the first failed limit (or ppl_ratio)."""
    applied = {k: v for k, v in limits.model_dump().items() if v is not None}
    failed = []
    for key, metric, op in LIMITS:
        if key not in applied:
            continue
        value, bound = measures[metric], applied[key]
        ok = value <= bound if op == "<=" else value >= bound
        if not ok:
            failed.append((metric, value, bound, op))
    head = (
        failed[0]
        if failed
        else ("ppl_ratio", measures["ppl_ratio"], applied.get("max_ppl_ratio"), "<=")
    )
    detail = (
        "; ".join(f"{m} {v:.4g} not {op} {b:.4g}" for m, v, b, op in failed)
        if failed
        else f"ppl ratio {measures['ppl_ratio']:.4f}, "
        f"top-1 agreement {measures['top1_agreement']:.3f}"
    )
    return {
        "ok": not failed,
        "metric": head[0],
        "value": head[1],
        "threshold": head[2],
        "detail": detail,
        "measures": measures,
        "limits": applied,
    }


def merged_limits(defaults: Thresholds, override: Thresholds | None) -> Thresholds:
    """Per-type defaults with the recipe's values on top (only the keys it sets)."""
    if override is None:
        return defaults
    return defaults.model_copy(update=override.model_dump(exclude_unset=True))


# ---------- gate tasks on the quant ----------


def parent_metrics(report: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """metric -> (merged model's value, higher is better), from gates/report.json."""
    out: dict[str, tuple[float, bool]] = {}
    for m in report.get("metrics", []):
        value = (m.get("values") or {}).get(report.get("candidate", "merged"))
        if isinstance(value, int | float):
            out[m["metric"]] = (float(value), bool(m.get("higher_is_better", True)))
    return out


def judge_recovery(
    quant: dict[str, float], parent: dict[str, tuple[float, bool]], min_recovery: float
) -> dict[str, Any]:
    """Recovery = quant/merged (merged/quant when lower is better); each must reach the floor."""
    recovery: dict[str, float | None] = {}
    failed: list[str] = []
    for metric, (ref, higher) in sorted(parent.items()):
        got = quant.get(metric)
        if got is None:
            recovery[metric] = None
            failed.append(f"{metric} missing")
            continue
        num, den = (got, ref) if higher else (ref, got)
        ratio = 1.0 if num == den else (num / den if den else float("inf"))
        recovery[metric] = round(ratio, 6)
        if ratio < min_recovery:
            failed.append(f"{metric} {got:.4g} vs merged {ref:.4g} (recovery {ratio:.3f})")
    detail = (
        f"below {min_recovery:g} recovery: " + "; ".join(failed)
        if failed
        else f"{len(parent)} metric(s) recover >= {min_recovery:g}"
    )
    return {
        "ok": not failed,
        "detail": detail,
        "metrics": quant,
        "recovery": recovery,
        "min_recovery": min_recovery,
    }
