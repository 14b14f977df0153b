"""The merged model's reference for every quant check, computed alongside the conversion.

Every quant is compared with the merged model's logits on held-out text, cut into chunks as
llama-perplexity does (quantize/measure/logits.py). Computing them (import torch/transformers,
load the model, one forward pass per chunk) needs nothing from llama.cpp, and llama.cpp's
converter (a subprocess, mostly one core of numpy and I/O) needs nothing from them: so the
reference runs in a thread while the conversion and the first quantization run, and the checks
wait for it.

Memory at real size: on a CPU without fast bf16 the forward pass runs in float32 (core/
compute_dtype.py, the same rule as the gate). When a float32 copy would not fit (a 7B bf16 model
is 28 GB of float32), the model is not loaded at all: each module reads its weights from the
safetensors files as it runs, as float32 (core/upcast.py `streamed_from_disk`). The numbers
are a float32 model's; memory is one module (measured at Qwen2.5-7B shape: docs/benchmarks.md).
Only the scored rows' logits are kept.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from medrelease.core.console import Reporter
from medrelease.core.errors import InputError
from medrelease.quantize.base import QuantContext
from medrelease.quantize.measure.logits import DEFAULT_CONTEXT
from medrelease.quantize.texts import TextSource


class ReferenceJob:
    """Fills `ctx.tokenizer`, `ctx.heldout_ids` and `ctx.reference_logits` in a thread."""

    def __init__(
        self,
        ctx: QuantContext,
        heldout: TextSource,
        max_tokens: int,
        reporter: Reporter,
        context: int = DEFAULT_CONTEXT,
    ):
        self.ctx = ctx
        self.heldout = heldout
        self.max_tokens = max_tokens
        self.context = context
        self.reporter = reporter
        self.seconds: float | None = None  # how long the reference itself took
        self._error: BaseException | None = None
        # daemon: an interrupted or failed step must not wait for a forward pass to finish
        self._thread = threading.Thread(target=self._run, name="mr-reference", daemon=True)

    def start(self) -> ReferenceJob:
        self.reporter.info("scoring the merged model on held-out text (reference for every quant)")
        self._thread.start()
        return self

    def _run(self) -> None:
        from medrelease.core.quiet import quiet_libraries

        t0 = time.perf_counter()
        try:
            quiet_libraries()  # first use of transformers in this step: silence it here
            compute_reference(self.ctx, self.heldout, self.max_tokens, self.context)
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc
        self.seconds = round(time.perf_counter() - t0, 3)

    def wait(self) -> QuantContext:
        """Block until the reference is ready; re-raise its error in the caller's thread."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.ctx


def compute_reference(
    ctx: QuantContext, heldout: TextSource, max_tokens: int, context: int = DEFAULT_CONTEXT
) -> None:
    """The merged model's tokenizer, the held-out chunks and the merged model's logits on them."""
    import gc
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.core.compute_dtype import choose_compute_dtype, weights_info
    from medrelease.quantize.measure.logits import (
        bos_added,
        chunk_context,
        held_out_chunks,
        held_out_ids,
        hf_logits,
        reference_from_logits,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.merged))
    config = json.loads((ctx.merged / "config.json").read_text())
    try:
        ids = held_out_ids(tokenizer, heldout.text)
        chunks = held_out_chunks(
            ids, chunk_context(config, context), max_tokens, bos_added(tokenizer, ids)
        )
    except ValueError as exc:
        raise InputError(
            f"held-out text {heldout.name!r}: {exc}", hint="use a longer text"
        ) from None
    info = weights_info(ctx.merged)
    choice = choose_compute_dtype(info.dtype, info.n_params, per_layer=True, streamed=True)
    model = None
    if choice.streamed:  # a model too big for a float32 copy is never loaded at all
        from medrelease.core.upcast import streamed_from_disk

        model = streamed_from_disk(ctx.merged)
    if model is None:
        load_dtype = info.dtype if choice.per_layer else choice.dtype
        model = AutoModelForCausalLM.from_pretrained(
            str(ctx.merged), dtype=getattr(torch, load_dtype)
        )
        model.eval()
        if choice.per_layer:
            from medrelease.core.upcast import upcast_per_module

            upcast_per_module(model)
    logits = hf_logits(model, chunks)
    del model
    gc.collect()  # the weights go before the checks load a quant next to the reference
    reference = reference_from_logits(chunks, logits, choice.dtype, choice.reason)
    del logits
    ctx.tokenizer, ctx.heldout_ids, ctx.reference_logits = tokenizer, chunks, reference


# ---------- the reference as files: for units that run in other processes ----------
#
# A Ray worker cannot share the driver's memory, and a real cluster's object store would copy
# the logits (1.2 GB at a 152k vocabulary) to every node. So the reference is saved once into
# the release's build folder, which every node sees at the driver's paths (the same shared
# filesystem the gate's units read the models from), and each unit memory-maps it: float32
# logits and float64 log-sum-exps exactly as computed, so every measure is the same number.

_HELDOUT = "heldout.json"


def save_reference(ctx: QuantContext, folder: Path) -> None:
    """Write `ctx`'s held-out chunks and reference logits into `folder` (an empty folder)."""
    import json
    import os

    import numpy as np

    from medrelease.core.atomic import atomic_write_text

    ref = ctx.reference_logits
    for i, (logits, lse) in enumerate(zip(ref.logits, ref.lse, strict=True)):
        for name, arr in ((f"logits-{i:04d}.npy", logits), (f"lse-{i:04d}.npy", lse)):
            tmp = folder / f".{name}.part"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, folder / name)
    held = ref.heldout
    meta = {
        "chunks": [list(map(int, c)) for c in held.chunks],
        "first": held.first,
        "dtype": ref.dtype,
        "dtype_reason": ref.dtype_reason,
    }
    atomic_write_text(folder / _HELDOUT, json.dumps(meta))  # last: present means complete


def load_reference(ctx: QuantContext, folder: Path) -> None:
    """Fill `ctx` (tokenizer, held-out ids, reference) from `save_reference`'s folder; the
    logits stay on disk, memory-mapped read-only (pages shared by the units of a node)."""
    import json

    import numpy as np
    from transformers import AutoTokenizer

    from medrelease.quantize.measure.logits import HeldOutIds, Reference

    meta = json.loads((folder / _HELDOUT).read_text())
    chunks = [list(c) for c in meta["chunks"]]
    held = HeldOutIds(t for c in chunks for t in c)
    held.chunks, held.first = chunks, int(meta["first"])
    n = len(chunks)
    logits = [np.load(folder / f"logits-{i:04d}.npy", mmap_mode="r") for i in range(n)]
    lse = [np.load(folder / f"lse-{i:04d}.npy", mmap_mode="r") for i in range(n)]
    ctx.tokenizer = AutoTokenizer.from_pretrained(str(ctx.merged))  # as compute_reference
    ctx.heldout_ids = held
    ctx.reference_logits = Reference(held, logits, lse, meta["dtype"], meta["dtype_reason"])


def start_reference(
    merged: Path,
    release: str,
    base_dir: Path,
    heldout: TextSource,
    max_tokens: int,
    threads: int,
    seed: int,
    reporter: Reporter,
    context: int = DEFAULT_CONTEXT,
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
    )
    return ctx, ReferenceJob(ctx, heldout, max_tokens, reporter, context).start()
