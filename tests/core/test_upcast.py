"""core/upcast.py: hooks that compute a half-precision module in float32 are added once, so a
network set up again (a sweep's kept network, medrelease.gate.kept_network) runs as before."""

from __future__ import annotations

import pytest


def test_upcasting_twice_adds_no_second_pair_of_hooks() -> None:
    torch = pytest.importorskip("torch")

    from medrelease.core.upcast import upcast_per_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)).to(torch.bfloat16)
    x = torch.randn(2, 8)
    upcast_per_module(model)
    first = model(x)
    hooks = [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model]
    upcast_per_module(model)
    assert (
        [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model]
        == hooks
        == [
            (1, 1),
            (1, 1),
        ]
    )
    assert first.dtype == torch.float32 and torch.equal(model(x), first)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())  # stored as they were
