"""`medrelease merge RECIPE`: merge the recipe's stages into <workdir>/<release>/merged/."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import (
    ForceOpt,
    JsonOpt,
    OverlayOpt,
    RecipeArg,
    SetOpt,
    StageOpt,
    WorkdirOpt,
)

SUMMARY = "Merge the stages with mergekit; verify; record provenance."
EXAMPLES = (
    "medrelease merge merges/afm-4.5b-openmed.yaml",
    "medrelease merge merges/qwen-4b-trad.yaml --stage trad=./checkpoints/dora --force",
)


def register(app: typer.Typer) -> None:
    @app.command()
    def merge(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        force: bool = ForceOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Merge stage checkpoints with mergekit; verify; record provenance in manifest.json."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, out_console, print_json
        from medrelease.merge.step import merge_release

        loaded = load(
            recipe, stage, check_merge=True, check_gates=True, overlays=overlay, sets=set_
        )
        result = merge_release(
            loaded, workdir=workdir, force=force, reporter=Reporter(quiet=as_json)
        )
        if as_json:
            print_json(result.summary())
            return
        from medrelease.merge.report import merge_table

        out_console.print(merge_table(result))
