"""The checks of a GGUF quant: its contents, then llama.cpp's tokenization, logits, stops and
gate tasks, each in a child process (quantize/gguf/child.py): a crash rejects this quant only."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.gguf.child import LlamaChildError, gguf_evaluate, gguf_greedy
from medrelease.quantize.measure.limits import Thresholds
from medrelease.records.quantize import QuantCheck


def check_gguf(art: QuantArtifact, ctx: QuantContext, limits: Thresholds) -> None:
    """What the GGUF contains (read in this process), then llama.cpp's tokenization, logits
    and the gate tasks, each in a child process: a crash rejects this quant, nothing more."""
    from medrelease.quantize.gguf.contents import check_gguf_files
    from medrelease.quantize.measure.judge import judge_logits
    from medrelease.quantize.measure.logits import gguf_measures
    from medrelease.quantize.measure.tokenization import check_tokenization_gguf

    if any(not c.get("ok") for c in art.checks.values()):
        return  # llama.cpp could not make it (build/imatrix): nothing to check
    if ctx.conversion is not None:  # every GGUF is made from the intermediate it checks
        art.checks["conversion"] = ctx.conversion
        if not ctx.conversion.get("ok"):
            return  # judged against a reference that is itself wrong, a quant proves nothing
    try:
        art.checks.update(check_gguf_files(art.files, ctx.merged, art.type, ctx.tokenizer))
    except Exception as exc:  # any parse failure means: not a readable GGUF
        art.checks["load"] = {
            "ok": False,
            "detail": f"the gguf reader cannot load {art.entry.name} ({type(exc).__name__}: {exc})",
        }
        return
    if not art.checks["vocabulary"]["ok"]:
        return  # llama.cpp would tokenize with the wrong vocabulary (or abort): nothing to learn
    try:
        art.checks["tokenization"] = check_tokenization_gguf(art.entry, ctx.tokenizer)
        assert ctx.reference_dir is not None, "the reference is saved before any check"
        measures = gguf_measures(art.entry, ctx.reference_logits, ctx.reference_dir, ctx.threads)
        art.checks["logits"] = judge_logits(measures, limits)
    except LlamaChildError as exc:
        name = "logits" if "tokenization" in art.checks else "tokenization"
        art.checks[name] = exc.record()
        if exc.message and "Failed to load model" in exc.message:
            art.checks[name]["detail"] = f"llama.cpp cannot load {art.entry.name} ({exc.message})"
        return
    if ctx.stop_check is not None and all(c.get("ok") for c in art.checks.values()):
        art.checks["stops_when_generating"] = gguf_stops(art.entry, ctx)
    if ctx.eval is not None and all(c.get("ok") for c in art.checks.values()):
        art.checks["eval"] = evaluate_gguf(art.entry, ctx)


def gguf_stops(path: Path, ctx: QuantContext) -> QuantCheck:
    """output.stop_check on the GGUF: a greedy chat answer through llama.cpp (in a child)
    must end with an EOS id the release declares."""
    from medrelease.checks.stops import stops_when_generating

    def generate(prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        return gguf_greedy(path, prompt_ids, ctx.eos_ids, max_new_tokens, ctx.threads)

    try:
        # the stops check's entry ({"ok", "detail"}, checks/stops.py) is a quant check entry
        found = stops_when_generating(generate, ctx.tokenizer, ctx.eos_ids, ctx.stop_check)
        return cast("QuantCheck", found)
    except LlamaChildError as exc:
        return exc.record()


EVAL_CONTEXT = 2048


def evaluate_gguf(path: Path, ctx: QuantContext) -> QuantCheck:
    """The recipe's gate tasks on the GGUF, through llama.cpp in a child process."""
    assert ctx.eval is not None
    try:
        return gguf_evaluate(path, ctx.merged, ctx.eval, EVAL_CONTEXT, ctx.threads)
    except LlamaChildError as exc:
        return exc.record()
