"""The checks of a GGUF quant: its contents, then llama.cpp's tokenization, logits, stops and
gate tasks, each in a child process (quantize/gguf/child.py): a crash rejects this quant only."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import cast

from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.gguf.child import (
    LlamaChildError,
    QuantChecked,
    gguf_check,
    gguf_evaluate,
    gguf_greedy,
)
from medrelease.quantize.measure.limits import Thresholds
from medrelease.records.quantize import QuantCheck


def check_gguf(art: QuantArtifact, ctx: QuantContext, limits: Thresholds) -> None:
    """What the GGUF contains (gguf-py's reader), then llama.cpp's tokenization and logits,
    in one child process (`gguf_check`), then the stop check and the gate tasks, each in a
    child of its own: a crash rejects this quant, nothing more."""
    from medrelease.quantize.measure.judge import judge_logits
    from medrelease.quantize.measure.logits import summarize
    from medrelease.quantize.measure.tokenization import tokenization_verdict

    if any(not c.get("ok") for c in art.checks.values()):
        return  # llama.cpp could not make it (build/imatrix): nothing to check
    if ctx.conversion is not None:  # every GGUF is made from the intermediate it checks
        art.checks["conversion"] = ctx.conversion
        if not ctx.conversion.get("ok"):
            return  # judged against a reference that is itself wrong, a quant proves nothing
    facts = ctx.tokenizer_facts()
    found = _checked(art, ctx)
    if found.contents is None:  # any parse failure means: not a readable GGUF
        message = found.error.message if found.error is not None else None
        art.checks["load"] = {
            "ok": False,
            "detail": f"the gguf reader cannot load {art.entry.name} ({message or found.error})",
        }
        return
    art.checks.update(cast("dict[str, QuantCheck]", found.contents))
    if not art.checks["vocabulary"]["ok"]:
        return  # llama.cpp would tokenize with the wrong vocabulary (or abort): nothing to learn
    assert ctx.reference_dir is not None, "the reference is saved before any check"
    if found.tokenized is not None:
        verdict = tokenization_verdict(found.tokenized, facts)
        art.checks["tokenization"] = cast("QuantCheck", verdict)
    if found.stats is not None:
        art.checks["logits"] = judge_logits(summarize(found.stats, ctx.reference_logits), limits)
    if found.error is not None:  # llama.cpp died tokenizing or scoring
        name = "logits" if found.tokenized is not None else "tokenization"
        art.checks[name] = found.error.record()
        if found.error.message and "Failed to load model" in found.error.message:
            art.checks[name]["detail"] = (
                f"llama.cpp cannot load {art.entry.name} ({found.error.message})"
            )
        return
    if ctx.stop_check is not None and all(c.get("ok") for c in art.checks.values()):
        art.checks["stops_when_generating"] = gguf_stops(art.entry, ctx)
    if ctx.eval is not None and all(c.get("ok") for c in art.checks.values()):
        art.checks["eval"] = evaluate_gguf(art.entry, ctx)


def _checked(art: QuantArtifact, ctx: QuantContext) -> QuantChecked:
    """`gguf_check` on the quant: the child reads the tokenizer's facts from the reference
    folder (the merged-side child saved them there) or from a folder of its own (a transformers
    reference; a file checked before any reference, which can only fail to be read)."""
    from medrelease.core.atomic import TMP_PREFIX
    from medrelease.quantize.measure.tokenizer_facts import FACTS_FILE

    with contextlib.ExitStack() as stack:
        folder = ctx.reference_dir
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=TMP_PREFIX)))
        if not (folder / FACTS_FILE).is_file():
            ctx.tokenizer_facts().save(folder)
        return gguf_check(art.files, ctx.merged, art.type, folder, ctx.reference_dir, ctx.threads)


def gguf_stops(path: Path, ctx: QuantContext) -> QuantCheck:
    """output.stop_check on the GGUF: a greedy chat answer through llama.cpp (in a child)
    must end with an EOS id the release declares."""
    from medrelease.checks.stops import stops_after

    facts = ctx.tokenizer_facts()
    assert facts.stop_prompt_ids is not None, "the facts carry the stop check's prompt"

    def generate(prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        return gguf_greedy(path, prompt_ids, ctx.eos_ids, max_new_tokens, ctx.threads)

    try:
        # the stops check's entry ({"ok", "detail"}, checks/stops.py) is a quant check entry
        found = stops_after(
            generate, facts.stop_prompt_ids, facts.decode, ctx.eos_ids, ctx.stop_check
        )
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
