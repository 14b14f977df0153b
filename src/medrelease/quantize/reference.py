"""The merged model's reference for every quant check, computed alongside the conversion.

Every quant is compared with the merged model's float32 logits on held-out text. Computing
them (import torch/transformers, load the model, one forward pass) needs nothing from
llama.cpp, and llama.cpp's converter (a subprocess, mostly one core of numpy and I/O) needs
nothing from them: so the reference runs in a thread while the conversion and the first
quantization run, and the checks wait for it. Same model, same dtype, same token ids as a
sequential run; only the order of independent work changes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from medrelease.core.console import Reporter
from medrelease.core.errors import InputError
from medrelease.quantize.base import QuantContext
from medrelease.quantize.texts import TextSource


class ReferenceJob:
    """Fills `ctx.tokenizer`, `ctx.heldout_ids` and `ctx.reference_logits` in a thread."""

    def __init__(self, ctx: QuantContext, heldout: TextSource, max_tokens: int, reporter: Reporter):
        self.ctx = ctx
        self.heldout = heldout
        self.max_tokens = max_tokens
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
            compute_reference(self.ctx, self.heldout, self.max_tokens)
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc
        self.seconds = round(time.perf_counter() - t0, 3)

    def wait(self) -> QuantContext:
        """Block until the reference is ready; re-raise its error in the caller's thread."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.ctx


def compute_reference(ctx: QuantContext, heldout: TextSource, max_tokens: int) -> None:
    """The merged model's tokenizer and its float32 logits on the held-out text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.quantize.checks import held_out_ids, hf_logits

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.merged))
    try:
        ids = held_out_ids(tokenizer, heldout.text, max_tokens)
    except ValueError as exc:
        raise InputError(
            f"held-out text {heldout.name!r}: {exc}", hint="use a longer text"
        ) from None
    model = AutoModelForCausalLM.from_pretrained(str(ctx.merged), dtype=torch.float32)
    reference = hf_logits(model, ids)
    del model
    ctx.tokenizer, ctx.heldout_ids, ctx.reference_logits = tokenizer, ids, reference


def start_reference(
    merged: Path,
    release: str,
    base_dir: Path,
    heldout: TextSource,
    max_tokens: int,
    threads: int,
    seed: int,
    reporter: Reporter,
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
    return ctx, ReferenceJob(ctx, heldout, max_tokens, reporter).start()
