"""The merged model's reference for every quant check.

Every quant is compared with the merged model's logits on held-out text, cut into chunks as
llama-perplexity does (quantize/measure/logits.py). Where the reference comes from is
`quantize.checks.reference`:

* `gguf` (the default when the recipe makes GGUFs): llama.cpp's logits of the high-precision
  GGUF intermediate (F16 by default) that every quant is made from anyway: the field's own
  convention (`llama-perplexity --kl-divergence-base` on the F16 GGUF), at the cost of one
  llama.cpp pass. The conversion itself is checked against transformers on one chunk: a thread
  scores the merged model on the first chunk while the converter runs (`cross_check`), and
  `gguf_reference` judges the intermediate's logits on that chunk with the limits of its float
  type. That check ("conversion") is part of every GGUF quant's record: a converter bug
  rejects them all, and a float quant that *is* the intermediate is not judged against itself
  alone.
* `transformers` (the default for an AWQ-only recipe): the merged model in transformers, on
  every chunk, in a thread while the conversion and the first quantization run.

Memory at real size (transformers): on a CPU without fast bf16 the forward pass runs in
float32 (core/compute_dtype.py, the same rule as the gate). When a float32 copy would not fit
(a 7B bf16 model is 28 GB of float32), the model is not loaded at all: each module reads its
weights from the safetensors files as it runs, as float32 (core/upcast.py
`streamed_from_disk`). Only the scored rows' logits are kept.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import InputError
from medrelease.quantize.base import QuantContext
from medrelease.quantize.measure.limits import Thresholds
from medrelease.quantize.measure.logits import DEFAULT_CONTEXT, HeldOutIds, Reference
from medrelease.quantize.texts import TextSource
from medrelease.records.quantize import QuantCheck


class ReferenceJob:
    """Fills `ctx.tokenizer` and `ctx.heldout_ids` in a thread, then, for a `transformers`
    reference, `ctx.reference_logits`; for a `gguf` one, `cross_check` (the first chunk's
    transformers logits, which `gguf_reference` compares the intermediate with)."""

    def __init__(
        self,
        ctx: QuantContext,
        heldout: TextSource,
        max_tokens: int,
        reporter: Reporter,
        folder: Path,
        context: int = DEFAULT_CONTEXT,
        source: str = "transformers",
        stop_prompt: str | None = None,
    ):
        self.ctx = ctx
        self.stop_prompt = stop_prompt  # output.stop_check's prompt, rendered with the facts
        self.folder = folder  # where the reference is saved (every check reads it there)
        self.source = source
        self.cross_check: Reference | None = None
        self.heldout = heldout
        self.max_tokens = max_tokens
        self.context = context
        self.reporter = reporter
        self.seconds: float | None = None  # how long the reference itself took
        self._follow_up: Any = None  # the merged side, handed to the converter's process
        self._error: BaseException | None = None
        # daemon: an interrupted or failed step must not wait for a forward pass to finish
        self._thread = threading.Thread(target=self._run, name="mr-reference", daemon=True)

    def start(self) -> ReferenceJob:
        if self.source == "transformers":
            self.reporter.info(
                "scoring the merged model on held-out text (reference for every quant)"
            )
        self._thread.start()
        return self

    def converter_follow_up(self) -> Any:
        """The merged side as a job for the converter's process to run once it has
        converted (quantize/gguf/child.py `FollowUp`), where the merged side waits for the
        converter anyway (`overlap_is_free` is false); else None. `wait()` then uses what it
        left, or runs the merged side in a child of its own if the converter never got to it."""
        if self.source != "gguf" or self._thread.ident is not None:
            return None
        from medrelease.quantize.gguf.child import merged_side_follow_up

        self._follow_up = merged_side_follow_up(self._merged_side_args())
        return self._follow_up

    def _merged_side_args(self) -> Any:
        from medrelease.quantize.gguf.child import merged_side_args

        return merged_side_args(
            self.ctx.merged,
            self.heldout,
            self.max_tokens,
            self.context,
            self.stop_prompt,
            self.folder,
        )

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.source == "transformers":
                from medrelease.core.quiet import quiet_libraries

                quiet_libraries()  # first use of transformers in this step: silence it here
                compute_reference(self.ctx, self.heldout, self.max_tokens, self.context)
            else:  # the intermediate's logits are the reference: transformers checks chunk 1
                self.cross_check = merged_side(self.ctx, self._merged_side_args(), self._follow_up)
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc
        finally:
            if self._follow_up is not None:
                self._follow_up.discard()
        self.seconds = round(time.perf_counter() - t0, 3)

    def wait(self) -> QuantContext:
        """Block until the thread is done; re-raise its error in the caller's thread. A
        transformers reference is then saved to `folder` and memory-mapped from there. A
        job that was not started (no overlap, `overlap_is_free`) runs now."""
        if self._thread.ident is None:  # never started
            self._thread.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self.source == "transformers" and self.ctx.reference_dir is None:
            save_reference(self.ctx, self.folder)
            self.ctx.reference_logits = open_reference(self.folder)  # the arrays go
            self.ctx.reference_dir = self.folder
        return self.ctx


def compute_reference(
    ctx: QuantContext, heldout: TextSource, max_tokens: int, context: int = DEFAULT_CONTEXT
) -> None:
    """The merged model's tokenizer, the held-out chunks and the merged model's logits on them."""
    held = tokenize_heldout(ctx, heldout, max_tokens, context)
    ctx.reference_logits = hf_reference(ctx.merged, held)


def tokenize_heldout(
    ctx: QuantContext, heldout: TextSource, max_tokens: int, context: int = DEFAULT_CONTEXT
) -> HeldOutIds:
    """`ctx.tokenizer` (the merged tokenizer) and `ctx.heldout_ids` (the chunks every runtime
    is scored on), set and returned."""
    ctx.tokenizer, ctx.heldout_ids = load_heldout(ctx.merged, heldout, max_tokens, context)
    return ctx.heldout_ids


def load_heldout(
    merged: Path, heldout: TextSource, max_tokens: int, context: int = DEFAULT_CONTEXT
) -> tuple[Any, HeldOutIds]:
    """The merged transformers tokenizer and the held-out chunks it gives."""
    import json

    from transformers import AutoTokenizer

    from medrelease.quantize.measure.logits import (
        bos_added,
        chunk_context,
        held_out_chunks,
        held_out_ids,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    config = json.loads((merged / "config.json").read_text())
    try:
        ids = held_out_ids(tokenizer, heldout.text)
        chunks = held_out_chunks(
            ids, chunk_context(config, context), max_tokens, bos_added(tokenizer, ids)
        )
    except ValueError as exc:
        raise InputError(
            f"held-out text {heldout.name!r}: {exc}", hint="use a longer text"
        ) from None
    return tokenizer, chunks


# ---------- the merged model's side of a GGUF reference, in a child ----------
#
# Loading a transformers tokenizer imports torch: half a gigabyte of resident memory in the
# quantize process before any weight, on top of every llama.cpp child it then runs. With a GGUF
# reference, transformers is needed for three things only: the held-out ids, what the checks
# need of the tokenizer (tokenizer_facts.py), and the conversion check's one chunk. They are
# computed in one short-lived child (the `merged_side` task of quantize/gguf/child.py), while
# the converter runs, and come back as files in the reference folder: the quantize process
# itself never imports torch for a GGUF release.

_CONVERSION = ("conversion-logits.npy", "conversion-lse.npy")


# Below this size of the F16 intermediate (~0.8B parameters), the merged-side child beside the
# converter (both hold torch, about 0.6 GB each) would be the step's memory peak, well above
# what the F16 pass then needs (its file plus buffers): there the child waits for the
# converter, which costs a few seconds; above it, running both at once costs no memory.
# Measured on SmolLM2-135M: converter 562 MiB + child 595 MiB at once, F16 pass 446 MiB.
OVERLAP_FROM_F16_BYTES = 3 * 2**30 // 2


def overlap_is_free(merged: Path) -> bool:
    """Whether the merged side may run while the converter does without raising the peak."""
    from medrelease.core.compute_dtype import weights_info

    return 2 * weights_info(merged).n_params >= OVERLAP_FROM_F16_BYTES


def merged_side(ctx: QuantContext, args: Any, ran: Any = None) -> Reference:
    """Fill `ctx.heldout_ids` and `ctx.facts` from the child that ran the merged side's job
    `args` (quantize/gguf/child.py `merged_side_args`), or from `ran`, the same job run by the
    converter's process; return the conversion check's transformers side (the first chunk's
    logits, memory-mapped from the reference folder)."""
    import numpy as np

    from medrelease.core.errors import EnvironmentProblem
    from medrelease.quantize.gguf.child import LlamaChildError, merged_side_in_child
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    try:
        side = merged_side_in_child(args, ran)
    except LlamaChildError as exc:
        raise EnvironmentProblem(
            exc.reason.replace(" (llama.cpp aborted)", ""),  # not llama.cpp: transformers
            hint="the merged model must load in transformers on this machine (free memory, "
            "or run `medrelease merge` again if merged/ was changed by hand)",
        ) from None
    if side["error"]:  # the held-out text is too short (load_heldout's message)
        raise InputError(side["error"], hint="use a longer text")
    held = HeldOutIds(t for c in side["chunks"] for t in c)
    held.chunks, held.first = side["chunks"], side["first"]
    folder = Path(args["out"])
    ctx.heldout_ids, ctx.facts = held, TokenizerFacts.load(folder)
    logits, lse = (np.load(folder / name, mmap_mode="r") for name in _CONVERSION)
    return Reference(first_chunk(held), [logits], [lse], "float32", side["reason"])


def task_merged_side(
    merged: Path,
    heldout: TextSource,
    max_tokens: int,
    context: int,
    stop_prompt: str | None,
    out: Path,
) -> dict[str, Any]:
    """The child's side of `merged_side`: facts and conversion logits written into `out`."""
    import numpy as np

    from medrelease.core.quiet import quiet_libraries
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    quiet_libraries()
    try:
        tokenizer, held = load_heldout(merged, heldout, max_tokens, context)
    except InputError as exc:
        return {"error": exc.message}
    TokenizerFacts.of(tokenizer, stop_prompt).save(out)
    del tokenizer
    ref = conversion_reference(merged, first_chunk(held))
    for name, arr in zip(_CONVERSION, (ref.logits[0], ref.lse[0]), strict=True):
        np.save(out / name, arr)
    return {"error": None, "chunks": held.chunks, "first": held.first, "reason": ref.dtype_reason}


def first_chunk(held: HeldOutIds) -> HeldOutIds:
    """The first chunk alone, chunked as in `held` (the conversion check's text)."""
    one = HeldOutIds(held.chunks[0])
    one.chunks, one.first = [held.chunks[0]], held.first
    return one


def conversion_reference(merged: Path, held: HeldOutIds) -> Reference:
    """The conversion check's side: the merged model's logits on `held` (one chunk) in
    float32 whatever the CPU (the check's point is precision), each module reading its own
    weights from disk as it runs: for one forward pass that reads every weight once, as
    loading would, while memory stays at one module (a float32 copy of a 2B model is 8 GB)."""
    from medrelease.core.upcast import streamed_from_disk
    from medrelease.quantize.measure.logits import hf_logits, reference_from_logits

    model = streamed_from_disk(merged)
    if model is None:  # checkpoint names that differ from the modules': load it instead
        return hf_reference(merged, held, precise=True)
    reason = "float32, each module's weights read from disk as it runs (conversion check)"
    return reference_from_logits(held, hf_logits(model, held), "float32", reason)


def hf_reference(merged: Path, held: HeldOutIds, *, precise: bool = False) -> Reference:
    """The merged model's logits on `held`'s scored rows, in transformers: in the dtype the
    gate would use (core/compute_dtype.py), or in float32 with `precise`."""
    import gc

    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.core.compute_dtype import choose_compute_dtype, weights_info
    from medrelease.quantize.measure.logits import hf_logits, reference_from_logits

    info = weights_info(merged)
    choice = choose_compute_dtype(
        info.dtype,
        info.n_params,
        per_layer=True,
        streamed=True,
        fast_half=False if precise else None,
    )
    model = None
    if choice.streamed:  # a model too big for a float32 copy is never loaded at all
        from medrelease.core.upcast import streamed_from_disk

        model = streamed_from_disk(merged)
    if model is None:
        load_dtype = info.dtype if choice.per_layer else choice.dtype
        model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=getattr(torch, load_dtype))
        model.eval()
        if choice.per_layer:
            from medrelease.core.upcast import upcast_per_module

            upcast_per_module(model)
    logits = hf_logits(model, held)
    del model
    gc.collect()  # the weights go before the checks load a quant next to the reference
    return reference_from_logits(held, logits, choice.dtype, choice.reason)


def gguf_reference(
    ctx: QuantContext,
    gguf: Path,
    outtype: str,
    cross_check: Reference,
    limits: Thresholds,
    folder: Path,
) -> QuantCheck:
    """llama.cpp's logits of the GGUF intermediate `gguf` on every held-out chunk, written by
    the child into `folder`, become the reference; returned: the conversion check, their first
    chunk judged against transformers' (`cross_check`) with the limits of its float type."""
    from medrelease.quantize.gguf.child import gguf_reference_logits
    from medrelease.quantize.measure.judge import judge_logits
    from medrelease.quantize.measure.logits import logit_measures

    held = ctx.heldout_ids
    assert isinstance(held, HeldOutIds), "tokenize_heldout runs first"
    gguf_reference_logits(gguf, folder, held.chunks, held.first, ctx.threads)
    reason = (
        f"llama.cpp on the {outtype.upper()} GGUF intermediate (quantize.checks.reference: "
        "gguf); the conversion is checked against transformers on one chunk"
    )
    write_meta(folder, held, f"gguf-{outtype}", reason)
    # judged on a mapping of its own, dropped after: the pages it reads (and those of the
    # transformers side) leave this process's memory before the quants' children start
    first = open_reference(folder).logits[0]
    check = judge_logits(logit_measures(cross_check, [first]), limits)
    del first
    ctx.reference_logits = open_reference(folder)
    ctx.reference_dir = folder
    check["detail"] = f"{outtype.upper()} GGUF vs transformers on 1 chunk: {check['detail']}"
    return check


# ---------- the reference as files ----------
#
# The reference lives in a folder of the release's build folder, whoever computed it: a GGUF
# quant is compared with it inside its llama.cpp child, chunk by chunk, as llama-perplexity
# --kl-divergence reads its base file (no process holds the whole reference, a quant's logits
# never travel); a Ray worker (which cannot share the driver's memory, and whose object store
# would copy 1.2 GB of logits at a 152k vocabulary to every node) memory-maps it from the
# shared build folder. float32 logits and float64 log-sum-exps exactly as computed, so every
# measure is the same number wherever it is taken.

_HELDOUT = "heldout.json"


def save_reference(ctx: QuantContext, folder: Path) -> None:
    """Write `ctx`'s held-out chunks and reference logits into `folder` (an empty folder)."""
    import os

    import numpy as np

    ref = ctx.reference_logits
    for i, (logits, lse) in enumerate(zip(ref.logits, ref.lse, strict=True)):
        for name, arr in ((f"logits-{i:04d}.npy", logits), (f"lse-{i:04d}.npy", lse)):
            tmp = folder / f".{name}.part"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, folder / name)
    write_meta(folder, ref.heldout, ref.dtype, ref.dtype_reason)


def write_meta(folder: Path, held: HeldOutIds, dtype: str, reason: str) -> None:
    import json

    from medrelease.core.atomic import atomic_write_text

    meta = {
        "chunks": [list(map(int, c)) for c in held.chunks],
        "first": held.first,
        "dtype": dtype,
        "dtype_reason": reason,
    }
    atomic_write_text(folder / _HELDOUT, json.dumps(meta))  # last: present means complete


def open_reference(folder: Path) -> Reference:
    """The reference saved in `folder`, its logits memory-mapped read-only (pages shared by
    every check that reads them, and dropped by the kernel when memory is short)."""
    import json

    import numpy as np

    meta = json.loads((folder / _HELDOUT).read_text())
    chunks = [list(c) for c in meta["chunks"]]
    held = HeldOutIds(t for c in chunks for t in c)
    held.chunks, held.first = chunks, int(meta["first"])
    n = len(chunks)
    logits = [np.load(folder / f"logits-{i:04d}.npy", mmap_mode="r") for i in range(n)]
    lse = [np.load(folder / f"lse-{i:04d}.npy", mmap_mode="r") for i in range(n)]
    return Reference(held, logits, lse, meta["dtype"], meta["dtype_reason"])


def load_reference(ctx: QuantContext, folder: Path) -> None:
    """Fill `ctx` (held-out ids, reference, tokenizer facts when saved) from a reference
    folder (a unit in another process: a Ray worker)."""
    from medrelease.quantize.measure.tokenizer_facts import FACTS_FILE, TokenizerFacts

    ref = open_reference(folder)
    ctx.heldout_ids, ctx.reference_logits, ctx.reference_dir = ref.heldout, ref, folder
    if (folder / FACTS_FILE).is_file():
        ctx.facts = TokenizerFacts.load(folder)


def start_reference(
    merged: Path,
    release: str,
    base_dir: Path,
    heldout: TextSource,
    max_tokens: int,
    threads: int,
    seed: int,
    reporter: Reporter,
    folder: Path,
    context: int = DEFAULT_CONTEXT,
    source: str = "transformers",
    stop_check: Any = None,
) -> tuple[QuantContext, ReferenceJob]:
    """A context whose path fields are usable now and whose reference fields `wait()` fills."""
    ctx = QuantContext(
        merged=merged,
        release=release,
        base_dir=base_dir,
        tokenizer=None,
        heldout_ids=[],
        reference_logits=None,
        threads=threads,
        seed=seed,
        stop_check=stop_check,
    )
    prompt = stop_check.prompt if stop_check is not None else None
    job = ReferenceJob(ctx, heldout, max_tokens, reporter, folder, context, source, prompt)
    if source == "gguf" and not overlap_is_free(merged):
        return ctx, job  # started by wait(), once the converter is done
    return ctx, job.start()
