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
    gguf_contents,
    gguf_evaluate,
    gguf_greedy,
)
from medrelease.quantize.measure.limits import Thresholds
from medrelease.records.quantize import QuantCheck


def check_gguf(art: QuantArtifact, ctx: QuantContext, limits: Thresholds) -> None:
    """What the GGUF contains (gguf-py's reader), then llama.cpp's tokenization, logits and
    the gate tasks, each in a child process: a crash rejects this quant, nothing more."""
    from medrelease.quantize.measure.judge import judge_logits
    from medrelease.quantize.measure.logits import gguf_measures
    from medrelease.quantize.measure.tokenization import check_tokenization_gguf

    if any(not c.get("ok") for c in art.checks.values()):
        return  # llama.cpp could not make it (build/imatrix): nothing to check
    if ctx.conversion is not None:  # every GGUF is made from the intermediate it checks
        art.checks["conversion"] = ctx.conversion
        if not ctx.conversion.get("ok"):
            return  # judged against a reference that is itself wrong, a quant proves nothing
    facts = ctx.tokenizer_facts()
    try:
        art.checks.update(_contents(art, ctx))
    except LlamaChildError as exc:  # any parse failure means: not a readable GGUF
        art.checks["load"] = {
            "ok": False,
            "detail": f"the gguf reader cannot load {art.entry.name} ({exc.message or exc})",
        }
        return
    if not art.checks["vocabulary"]["ok"]:
        return  # llama.cpp would tokenize with the wrong vocabulary (or abort): nothing to learn
    try:
        art.checks["tokenization"] = check_tokenization_gguf(art.entry, facts)
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


def _contents(art: QuantArtifact, ctx: QuantContext) -> dict[str, QuantCheck]:
    """What the GGUF contains, read in a child (quantize/gguf/child.py `gguf_contents`),
    against the merged folder and the tokenizer's facts, which the child reads from the
    reference folder (the merged-side child saved them there) or a folder of its own."""
    from medrelease.core.atomic import TMP_PREFIX
    from medrelease.quantize.measure.tokenizer_facts import FACTS_FILE

    with contextlib.ExitStack() as stack:
        folder = ctx.reference_dir
        if folder is None:  # checked before any reference (a file that cannot be read)
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=TMP_PREFIX)))
        if not (folder / FACTS_FILE).is_file():
            ctx.tokenizer_facts().save(folder)
        found = gguf_contents(art.files, ctx.merged, art.type, folder)
    return cast("dict[str, QuantCheck]", found)


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
