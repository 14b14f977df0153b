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
    from medrelease.merge.safetensors_check import check_file

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


def kill_at_random_point(
    args: Sequence[str],
    *,
    sig: str,
    rng: random.Random,
    started: Callable[[], bool],
    window_s: float,
    env: dict[str, str] | None = None,
) -> Kill:
    """Start `args`; once `started()` holds, wait a random time in [0, window_s], signal it."""
    proc = subprocess.Popen(
        list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.time() + 300
    while proc.poll() is None and not started() and time.time() < deadline:
        time.sleep(0.01)
    delay = rng.uniform(0, window_s)
    time.sleep(delay)
    hit = proc.poll() is None
    if hit:
        proc.send_signal(SIGNALS[sig])
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return Kill(sig, round(delay, 3), hit, proc.returncode, err or "")


def publish_fixture() -> Any:
    """tests/publish/pubhelpers.py builds a complete release folder; reuse it, do not copy it."""
    import pubhelpers

    return pubhelpers
