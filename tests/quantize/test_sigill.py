"""A llama.cpp child killed by SIGILL is the machine's problem (a build for instructions this CPU
does not run), not a rejected quant: it stops with exit 7 and says how to rebuild."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from medrelease.core.errors import EnvironmentProblem
from medrelease.quantize.gguf.child import describe_exit, run_process


def test_sigill_is_an_environment_problem_with_the_rebuild(tmp_path: Path) -> None:
    code = run_process(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"],
        tmp_path / "log.txt",
    )
    assert code == -signal.SIGILL
    with pytest.raises(EnvironmentProblem) as err:
        describe_exit(code)
    assert err.value.exit_code == 7
    assert "SIGILL" in str(err.value) and "GGML_NATIVE=OFF" in (err.value.hint or "")


def test_other_signals_and_codes_are_described() -> None:
    assert describe_exit(-signal.SIGABRT) == "SIGABRT"
    assert describe_exit(-signal.SIGKILL) == "SIGKILL"
    assert describe_exit(3) == 3
