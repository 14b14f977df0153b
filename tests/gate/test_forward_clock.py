"""The sweep's overhead is measured against the models' forward passes alone (ForwardClock)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from medrelease.gate.forward_clock import ForwardClock, clock_for


class _Slow(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor, again: bool = False) -> torch.Tensor:
        time.sleep(0.03)
        if again:  # a nested call of the same module counts once
            x = self(x)
        return self.inner(x)


def test_clock_counts_forward_calls_only() -> None:
    model = _Slow()
    clock = ForwardClock(model)
    for _ in range(3):
        model(torch.ones(1, 2))
        time.sleep(0.05)  # outside the forward pass: not counted
    assert 0.09 <= clock.seconds < 0.09 + 0.12
    before = clock.seconds
    model(torch.ones(1, 2), again=True)
    assert 0.06 <= clock.seconds - before < 0.06 + 0.04
    clock.close()
    model(torch.ones(1, 2))
    assert clock.seconds - before < 0.1  # closed: hooks gone
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_clock_for_needs_a_network_in_this_process() -> None:
    assert clock_for(SimpleNamespace(model="vllm-engine")) is None
    clock = clock_for(SimpleNamespace(model=_Slow()))
    assert isinstance(clock, ForwardClock)
    clock.close()
