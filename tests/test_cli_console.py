"""The CLI around the steps: Ctrl-C's one line, --debug anywhere, a closed stdout (| head)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli, write_recipe

MEDRELEASE = [sys.executable, "-m", "medrelease.cli"]


def tiny_recipe(tmp_path: Path) -> Path:
    merge = {"merge_method": "linear", "models": [{"model": "a"}, {"model": "b"}],
             "parameters": {"weight": 0.5}}  # fmt: skip
    return write_recipe(tmp_path / "r.yaml", {"a": "./a", "b": "./b"}, merge)


def _default_sigint() -> None:
    # a background test process may inherit SIGINT ignored; Ctrl-C in a terminal is not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*MEDRELEASE, "hub-server", "--root", str(tmp_path / "hub"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None and "local Hub serving" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("interrupted: medrelease hub-server stopped")
    assert "nothing half-written was left in place" in lines[0]


def test_ctrl_c_names_the_step_and_phase_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """What `release` was doing when interrupted: its step (pipeline) and the progress phase."""
    from medrelease.core.console import Reporter, activity
    from medrelease.pipeline import run as pipeline_run

    def interrupted_release(loaded, *, reporter, **_):  # type: ignore[no-untyped-def]
        with activity("gate"), Reporter(quiet=True).phase("merged / demo_mcq: lm-eval"):
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_run, "run_release", interrupted_release)
    code = run_cli("release", tiny_recipe(tmp_path), "--workdir", tmp_path / "w")
    err = capfd.readouterr().err
    assert code == 130, err
    assert "interrupted: medrelease release stopped during gate > merged / demo_mcq: lm-eval" in err
    assert "Traceback" not in err
    # the record is read once: a later interrupt elsewhere does not repeat it
    from medrelease.core.console import interrupted_activity

    assert interrupted_activity() is None


def test_debug_is_accepted_after_the_subcommand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDRELEASE_DEBUG", "0")  # restored after the test (main sets it)
    missing = tmp_path / "missing.yaml"
    assert run_cli("status", missing) == 2  # one line, no traceback
    assert "error:" in capsys.readouterr().err
    from medrelease.core.errors import MedreleaseError

    with pytest.raises(MedreleaseError):  # --debug: the traceback, wherever the flag is
        run_cli("status", missing, "--debug")
    # after `--`, `--debug` is an argument like any other, not the flag
    monkeypatch.setenv("MEDRELEASE_DEBUG", "0")
    assert run_cli("status", missing, "--", "--debug") == 2


@pytest.mark.parametrize("as_json", [False, True])
def test_closed_stdout_is_not_a_failure(tmp_path: Path, as_json: bool) -> None:
    """`medrelease status RECIPE | head -0`: the reader left before the table was written."""
    args = [*MEDRELEASE, "status", str(tiny_recipe(tmp_path)), "-w", str(tmp_path / "w")]
    proc = subprocess.Popen(
        args + (["--json"] if as_json else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the process writes anything: its first write breaks the pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    # nothing but status's own note that the build does not exist yet (stderr is for messages)
    assert "Traceback" not in err and "error" not in err.lower(), err
    assert err == "" or "nothing has run there yet" in err, err
