"""lm-eval's tqdm bars never reach the terminal: the model bars drive the unit's row (counts,
hence an ETA), the others only count. Checked on the class and on `medrelease gate` run under
a pseudo-terminal, as a user sees it."""

from __future__ import annotations

import os
import pty
import re
import sys
from pathlib import Path
from typing import Any

import pytest

# what a tqdm bar prints: "45%|████▌     | 9/20 [00:01<00:02, 4.50it/s]"
TQDM_LINE = re.compile(r"\d+%\||\d+(\.\d+)?(it/s|s/it)|\[\d\d:\d\d<")
THIRD_PARTY = ("Running loglikelihood", "Running generate_until", "Tokenizing inputs",
               "Building contexts", "Checking cached requests", "is_fx_tracing")  # fmt: skip
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_model_bars_drive_the_row_and_draw_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    import lm_eval.api.model
    import lm_eval.api.task

    from medrelease.gate.progress import lm_eval_progress

    calls: list[tuple[float, Any]] = []

    def advance(n: float = 1, *, total: Any = None) -> None:
        calls.append((n, total))

    original = lm_eval.api.model.tqdm
    with lm_eval_progress(advance):
        # as lm-eval calls them: an explicit disable=False defeats TQDM_DISABLE
        for _ in lm_eval.api.model.tqdm([1, 2, 3], desc="Tokenizing inputs", disable=False):
            pass
        for desc, total in (("Running loglikelihood requests", 4), ("Running generate_until "
                                                                     "requests", 2)):  # fmt: skip
            bar = lm_eval.api.task.tqdm(total=total, desc=desc, disable=False)
            for _ in range(total):
                bar.update(1)
            bar.close()
    assert lm_eval.api.model.tqdm is original  # given back
    assert capfd.readouterr().err == ""  # nothing drawn
    totals = [t for _, t in calls if t is not None]
    assert totals == [4, 6]  # the row's total grows with each model bar; tokenizing is not one
    assert sum(n for n, _ in calls) == 6


def _run_in_pty(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal on stdout and stderr, as a user's shell gives
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    out = bytearray()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out.extend(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@pytest.mark.slow
def test_gate_under_a_terminal_shows_no_third_party_progress(
    tmp_path: Path, llama: dict[str, Path]
) -> None:
    from gate.gatehelpers import gate_recipe, write_demo_task
    from medrelease.testing.tiny import derive_stage
    from releases import built_release

    write_demo_task(tmp_path / "tasks")
    gates = {
        "baselines": ["base"],
        "batch_size": 4,
        "device": "cpu",
        "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
        "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
    }
    cand = derive_stage(llama["base"], tmp_path / "cand", seed=7)
    recipe = built_release(tmp_path, "merge", gate_recipe(llama, gates), merged=cand).recipe
    cli = str(Path(sys.executable).parent / "medrelease")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    env.update({"COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"})
    code, out = _run_in_pty(
        [cli, "gate", str(recipe), "--workdir", "build", "--no-cache"], tmp_path, env
    )
    text = ANSI.sub("", out)
    assert code == 0, text[-3000:]
    lines = [line for line in re.split(r"[\r\n]", text) if line.strip()]
    for line in lines:
        assert not TQDM_LINE.search(line), line
        assert not any(w in line for w in THIRD_PARTY), line
    # one row per unit, with the unit's request counts (12 questions x 4 choices), not 0/?
    for model in ("merged", "base"):
        rows = [line for line in lines if f"{model} / demo_mcq: lm-eval" in line]
        assert rows and "48/48" in rows[-1], rows[-3:]
    assert "gates:" in text and "PASSED" in text  # the table follows


def test_torch_fx_tracing_notice_is_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import torch.fx._symbolic_trace as symbolic_trace

    from medrelease.core.quiet import quiet_libraries

    monkeypatch.delenv("MEDRELEASE_DEBUG", raising=False)
    logger = logging.getLogger("torch.fx._symbolic_trace")
    # as in a fresh process (another test may have quieted it already); restored after
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    seen: list[str] = []

    class Keep(logging.Handler):  # on the logger itself: torch's loggers do not propagate
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    try:

        def notice() -> list[str]:
            seen.clear()
            symbolic_trace.is_fx_tracing_warning.cache_clear()  # said once per process
            symbolic_trace.is_fx_tracing()
            return [m for m in seen if "is_fx_tracing" in m]

        assert notice()  # what AWQ's tracing prints without us
        quiet_libraries()
        assert notice() == []
    finally:
        logger.removeHandler(handler)
