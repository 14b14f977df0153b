"""The seconds a model spends in its forward passes, measured around the module's own call.

A sweep's overhead is everything a trial does except the models' forward passes: the merge,
loading the model, lm-eval's request building and tokenization, the report. Timing lm-eval as a
whole would count its own bookkeeping as forward work; hooks on the top-level module count only
the calls into the network (every call: a log-likelihood batch, each step of a generation).
"""

from __future__ import annotations

import time
from typing import Any


class ForwardClock:
    """Sum of wall time inside `module(...)` calls (nested calls counted once)."""

    def __init__(self, module: Any):
        self.seconds = 0.0
        self._depth = 0
        self._started = 0.0
        self._sync = _synchronizer(module)
        self._handles = [
            module.register_forward_pre_hook(self._enter),
            module.register_forward_hook(self._leave),
        ]

    def _enter(self, *_: Any) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _leave(self, *_: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._sync()  # a GPU's work is queued: the time is the time it took, not to queue it
            self.seconds += time.perf_counter() - self._started

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _synchronizer(module: Any) -> Any:
    import torch

    param = next(iter(module.parameters()), None)
    if param is not None and param.device.type == "cuda":
        return lambda: torch.cuda.synchronize(param.device)
    return lambda: None


def clock_for(lm: Any) -> ForwardClock | None:
    """A clock on an lm-eval model's network, where it has one in this process (hf backends
    keep it as `.model`; vLLM's runs elsewhere: None, and the caller says so)."""
    import torch

    model = getattr(lm, "model", None)
    if isinstance(model, torch.nn.Module):
        return ForwardClock(model)
    return None
