"""`medrelease status RECIPE`: what has run, what is stale and why."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import JsonOpt, OverlayOpt, RecipeArg, SetOpt, StageOpt, WorkdirOpt


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Show each step: current, stale (and why) or pending, with its artifact hashes."""
        from medrelease.commands.common import load
        from medrelease.core.console import err_console, out_console, print_json
        from medrelease.pipeline.report import release_table, status_json
        from medrelease.pipeline.run import release_status

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        run = release_status(loaded, workdir=workdir)
        if as_json:
            print_json(status_json(run))
        else:
            for note in run.notes:
                err_console.print(note, markup=False, highlight=False)
            out_console.print(release_table(run, title="status", artifacts=True))


# `medrelease --help`'s line and the examples under "Examples:" (commands/__init__.py)
SUMMARY = "Show each step: current, stale (and why) or pending."
EXAMPLES = (
    "medrelease status merges/med-advisor-4b.yaml",
    "medrelease status merges/med-advisor-4b.yaml --json   # for scripts",
)
