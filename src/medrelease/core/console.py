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


err_console = Console(stderr=True, highlight=False, width=_width())
out_console = Console(highlight=False, width=_width())


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
            yield advance
        finally:
            t = progress.tasks[progress.task_ids.index(task)]
            progress.update(
                task, completed=t.total if t.total is not None else 1, total=t.total or 1
            )


def print_json(obj: Any) -> None:
    sys.stdout.write(redact(json.dumps(obj, indent=2, default=str)) + "\n")
    sys.stdout.flush()
