"""Terminal output: human messages and progress on stderr, results (tables, JSON) on stdout.

Everything passes through `redact()` so a Hub token can never reach a terminal or CI log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from medrelease.core.secrets import redact


def _width() -> int | None:
    # Rich assumes 80 columns when output is not a terminal (CI logs, pipes): too narrow for
    # the gate table. COLUMNS still wins when set.
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120


class StdoutClosed(BrokenPipeError):
    """The reader of stdout went away (`medrelease publish --dry-run | head`). Only results
    go to stdout, after the work is done, so the CLI ends with exit 0; a broken pipe anywhere
    else (a network socket) stays an error."""


class _ResultConsole(Console):
    def on_broken_pipe(self) -> None:  # rich's own exits 1
        self.quiet = True
        raise StdoutClosed()


class _MessageConsole(Console):
    def on_broken_pipe(self) -> None:  # stderr gone: the work goes on, silently
        self.quiet = True


err_console = _MessageConsole(stderr=True, highlight=False, width=_width())
out_console = _ResultConsole(highlight=False, width=_width())

# What the process is doing, innermost last (a step, then a phase of it), and what it was
# doing when Ctrl-C reached it: the CLI names that in its one-line interrupt message (by then
# the stack has unwound).
_activity: list[str] = []
_interrupted_during: list[str] = []


def interrupted_activity() -> str | None:
    """What was under way when Ctrl-C stopped the run (once: the record is cleared)."""
    what = _interrupted_during[0] if _interrupted_during else None
    _interrupted_during.clear()
    return what or None


@contextlib.contextmanager
def activity(what: str) -> Iterator[None]:
    """Mark `what` as under way (a step of `release`, a progress phase) for the interrupt
    message; phases of concurrent units may end in any order."""
    _activity.append(what)
    try:
        yield
    except KeyboardInterrupt:
        if not _interrupted_during:
            _interrupted_during.append(" > ".join(_activity))
        raise
    finally:
        del _activity[len(_activity) - 1 - _activity[::-1].index(what)]


class Reporter:
    """What a step tells the user while it works. `quiet` (e.g. --json) keeps stderr terse."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet
        self._progress: Progress | None = None

    def info(self, message: str) -> None:
        if not self.quiet:
            err_console.print(redact(message))

    def warn(self, message: str) -> None:
        # warnings carry data (reasons, tool logs): brackets in them are text, not markup
        from rich.markup import escape

        err_console.print(f"[yellow]warning:[/yellow] {escape(redact(message))}")

    @contextlib.contextmanager
    def progress(self, *, in_bytes: bool = False) -> Iterator[Progress]:
        """Rows of progress on stderr; `in_bytes` shows sizes and speed (downloads)."""
        counts: list[ProgressColumn] = (
            [DownloadColumn(), TransferSpeedColumn()] if in_bytes else [MofNCompleteColumn()]
        )
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            *counts,
            TimeElapsedColumn(),
            TimeRemainingColumn(),  # the ETA, once a row knows its total
            console=err_console,
            disable=self.quiet,
            transient=False,
        )
        with progress:
            self._progress = progress
            try:
                yield progress
            finally:
                self._progress = None

    @contextlib.contextmanager
    def phase(self, description: str, total: float | None = None) -> Iterator[Any]:
        """A progress row for one phase; yields a callable `advance(n=1)`."""
        if self._progress is None:
            with self.progress(), self.phase(description, total) as outer:
                yield outer
            return
        progress = self._progress
        task = progress.add_task(description, total=total)

        def advance(n: float = 1, *, total: float | None = None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.advance(task, n)

        try:
            with activity(description):
                yield advance
        finally:
            t = progress.tasks[progress.task_ids.index(task)]
            progress.update(
                task, completed=t.total if t.total is not None else 1, total=t.total or 1
            )


def print_json(obj: Any) -> None:
    try:
        sys.stdout.write(redact(json.dumps(obj, indent=2, default=str)) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed() from None
