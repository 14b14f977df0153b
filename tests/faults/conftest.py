"""Fault tests record what they injected, so `bench/reliability.py` can count it.

With MEDRELEASE_FAULT_LOG=<file> set, each `fault_log.add(...)` appends one JSON line
(test id, kind, detail); the reliability report joins them with the test outcomes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest


class FaultLog:
    def __init__(self, nodeid: str):
        self.nodeid = nodeid
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, **detail: Any) -> None:
        self.events.append({"test": self.nodeid, "kind": kind, **detail})


@pytest.fixture
def fault_log(request: pytest.FixtureRequest) -> Iterator[FaultLog]:
    log = FaultLog(request.node.nodeid)
    yield log
    target = os.environ.get("MEDRELEASE_FAULT_LOG")
    if target and log.events:
        with open(target, "a") as fh:
            for e in log.events:
                fh.write(json.dumps(e, default=str) + "\n")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Random kill points, reproducible per test (MEDRELEASE_FAULT_SEED changes them all)."""
    seed = f"{os.environ.get('MEDRELEASE_FAULT_SEED', '0')}:{request.node.nodeid}"
    return random.Random(seed)
