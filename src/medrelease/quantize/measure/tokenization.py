"""Tokenization check: the quant's runtime tokenizer gives the same ids as the merged HF
tokenizer on fixed probes (BOS/EOS handling, special tokens, chat template output, odd spacing,
unicode). Each check returns a JSON-able dict with `ok` and a one-line `detail` a user can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts, probe_ids

if TYPE_CHECKING:
    from medrelease.quantize.gguf.child import Tokenized

MAX_SHOWN = 3


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


def check_tokenization_gguf(gguf: Any, facts: TokenizerFacts) -> dict[str, Any]:
    """llama.cpp's tokenizer (as the GGUF metadata configures it) vs the merged HF tokenizer
    (its `facts`: the ids it gives each probe, its special tokens and chat template).

    `gguf`: the GGUF's path (llama.cpp tokenizes in a child process, quantize/gguf/child.py:
    a vocabulary llama.cpp aborts on raises LlamaChildError instead of killing us), or an
    already open llama_cpp.Llama (tests compare in process)."""
    from medrelease.quantize.gguf.child import gguf_tokenize_probes, tokenize_with

    if isinstance(gguf, str | Path):
        seen = gguf_tokenize_probes(Path(gguf), facts.probes)
    else:
        seen = tokenize_with(gguf, facts.probes)
    return tokenization_verdict(seen, facts)


def tokenization_verdict(seen: Tokenized, facts: TokenizerFacts) -> dict[str, Any]:
    """What llama.cpp made of the probes (`seen`) against the merged tokenizer's `facts`."""
    spm = seen["metadata"].get("tokenizer.ggml.model") == "llama"
    result = _compare(facts.probe_ids, seen["ids"], "gguf", SPM_ADVISORY if spm else ())
    ids = {
        "bos": (facts.bos_token_id, seen["bos"]),
        "eos": (facts.eos_token_id, seen["eos"]),
    }
    bad = [f"{k} {hf} vs {gg}" for k, (hf, gg) in ids.items() if hf is not None and hf != gg]
    if bad:
        result["ok"] = False
        result["detail"] = "special token ids differ (merged vs gguf): " + ", ".join(bad)
    tmpl_gguf = seen["metadata"].get("tokenizer.chat_template")
    if facts.chat_template and tmpl_gguf != facts.chat_template:
        result["ok"] = False
        result["detail"] = "the GGUF's chat template differs from the merged model's"
    return result


def check_tokenization_hf(tokenizer: Any, quant_tokenizer: Any) -> dict[str, Any]:
    """Tokenizer files shipped with an HF-format quant (AWQ) vs the merged tokenizer."""
    ref = probe_ids(tokenizer)
    got = probe_ids(quant_tokenizer)
    result = _compare(ref, got, "quant")
    if getattr(tokenizer, "chat_template", None) != getattr(quant_tokenizer, "chat_template", None):
        result["ok"] = False
        result["detail"] = "the quant's chat template differs from the merged model's"
    return result
