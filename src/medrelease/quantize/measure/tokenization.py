"""Tokenization check: the quant's runtime tokenizer gives the same ids as the merged HF
tokenizer on fixed probes (BOS/EOS handling, special tokens, chat template output, odd spacing,
unicode). Each check returns a JSON-able dict with `ok` and a one-line `detail` a user can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medrelease.quantize.texts import PROBE_CHAT, PROBE_TEXTS

MAX_SHOWN = 3


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


def check_tokenization_gguf(gguf: Any, tokenizer: Any) -> dict[str, Any]:
    """llama.cpp's tokenizer (as the GGUF metadata configures it) vs the merged HF tokenizer.

    `gguf`: the GGUF's path (llama.cpp tokenizes in a child process, quantize/gguf/child.py:
    a vocabulary llama.cpp aborts on raises LlamaChildError instead of killing us), or an
    already open llama_cpp.Llama (tests compare in process)."""
    from medrelease.quantize.gguf.child import gguf_tokenize_probes, tokenize_with

    probes = _probe_texts(tokenizer)
    if isinstance(gguf, str | Path):
        seen = gguf_tokenize_probes(Path(gguf), probes)
    else:
        seen = tokenize_with(gguf, probes)
    ref = hf_probe_ids(tokenizer)
    spm = seen["metadata"].get("tokenizer.ggml.model") == "llama"
    result = _compare(ref, seen["ids"], "gguf", SPM_ADVISORY if spm else ())
    ids = {
        "bos": (tokenizer.bos_token_id, seen["bos"]),
        "eos": (tokenizer.eos_token_id, seen["eos"]),
    }
    bad = [f"{k} {hf} vs {gg}" for k, (hf, gg) in ids.items() if hf is not None and hf != gg]
    if bad:
        result["ok"] = False
        result["detail"] = "special token ids differ (merged vs gguf): " + ", ".join(bad)
    tmpl_hf = getattr(tokenizer, "chat_template", None)
    tmpl_gguf = seen["metadata"].get("tokenizer.chat_template")
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
