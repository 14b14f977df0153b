"""Helpers for the fault tests: run the CLI in a subprocess, kill it, check what it left.

"Consistent" means: manifest.json (if any) is valid JSON, every output it records exists with
the recorded size and sha256, and no final artifact path is a half-written file (temporary
`.mr-tmp-` leftovers of a SIGKILL are allowed until the next run sweeps them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.atomic import TMP_PREFIX
from medrelease.core.hashing import sha256_file_uncached

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}


def cli(*args: object, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "medrelease.cli", *(str(a) for a in args)]


def run(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        list(args), capture_output=True, text=True, env={**os.environ, **(env or {})},
        timeout=timeout, check=False,
    )  # fmt: skip


def temp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TMP_PREFIX}*")] if root.is_dir() else []


def recorded_outputs(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for step in (manifest.get("steps") or {}).values():
        if not isinstance(step, dict):
            continue
        out.update(step.get("outputs") or {})
        for q in step.get("quants") or []:
            out.update(q.get("files") or {})
        out.update(step.get("report") or {})
    return out


def check_consistent(root: Path) -> dict[str, Any] | None:
    """Assert the release folder is consistent; return the manifest (None if absent)."""
    path = root / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())  # raises on a half-written manifest
    assert isinstance(manifest.get("steps"), dict), "manifest has no steps mapping"
    for rel, info in recorded_outputs(manifest).items():
        p = root / rel
        assert p.is_file(), f"manifest records {rel} but it is missing"
        assert p.stat().st_size == info["size"], f"{rel}: size differs from the manifest"
        assert sha256_file_uncached(p) == info["sha256"], f"{rel}: sha256 differs"
    return manifest


def check_safetensors_complete(folder: Path) -> None:
    """Every safetensors file in place is whole (a half-written one fails the header check)."""
    from medrelease.stages.safetensors_check import check_file

    for f in folder.glob("*.safetensors"):
        check_file(f)


def default_sigint() -> None:
    """Undo an inherited SIG_IGN for SIGINT (background jobs of a non-interactive shell get
    one): Python installs its KeyboardInterrupt handler only over the default disposition,
    so an ignored SIGINT would let the step finish and hide what the test is about."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Kill:
    signal: str
    delay_s: float
    hit: bool  # the process was still running when the signal arrived
    returncode: int
    stderr: str
    attempts: int = 1  # runs it took to land the signal while the process was running


def kill_at_random_point(
    args: Sequence[str],
    *,
    sig: str,
    rng: random.Random,
    started: Callable[[], bool],
    window_s: float,
    env: dict[str, str] | None = None,
    reset: Callable[[], None] | None = None,
    attempts: int = 3,
) -> Kill:
    """Start `args`; once `started()` holds, wait a random time in [0, window_s], signal it.

    When the process finished before the signal (a fast machine, a small model), `reset()`
    puts the workdir back and the next attempt draws its delay within 80% of the time the
    finished run took, so the report counts real injections rather than near misses.
    """
    kill = _one_kill(args, sig, rng, started, window_s, env)
    for attempt in range(2, attempts + 1):
        if kill.hit or reset is None:
            break
        reset()
        window_s = max(0.05, 0.8 * kill.ran_s)
        kill = _one_kill(args, sig, rng, started, window_s, env)
        kill.attempts = attempt
    return kill


@dataclass
class _Run(Kill):
    ran_s: float = 0.0  # from `started()` to the process's exit, when the signal missed


def _one_kill(
    args: Sequence[str],
    sig: str,
    rng: random.Random,
    started: Callable[[], bool],
    window_s: float,
    env: dict[str, str] | None,
) -> _Run:
    proc = subprocess.Popen(
        list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.time() + 300
    while proc.poll() is None and not started() and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.time()
    delay = rng.uniform(0, window_s)
    while time.time() < t0 + delay and proc.poll() is None:
        time.sleep(0.005)
    ran = time.time() - t0
    hit = proc.poll() is None
    if hit:
        proc.send_signal(SIGNALS[sig])
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return _Run(sig, round(delay, 3), hit, proc.returncode, err or "", ran_s=0.0 if hit else ran)
