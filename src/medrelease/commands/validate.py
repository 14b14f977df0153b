"""`medrelease validate RECIPE`: check a recipe without loading any weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medrelease.commands.common import JsonOpt, OverlayOpt, RecipeArg, SetOpt, StageOpt


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        recipe: Path = RecipeArg,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Check a recipe (schema, stage names, mergekit block) without loading weights."""
        from medrelease.commands.common import parse_overrides
        from medrelease.core.console import err_console, out_console, print_json
        from medrelease.core.errors import RecipeError
        from medrelease.pipeline.recipes import load_recipe
        from medrelease.recipe.load import all_problems

        try:
            loaded = load_recipe(
                recipe, overrides=parse_overrides(stage), overlays=overlay, sets=set_
            )
        except RecipeError as err:
            problems = all_problems(err)
            if not as_json:
                for line in problems[1:]:
                    err_console.print(f"[red]error:[/red] {line}", soft_wrap=True)
            raise
        r = loaded.recipe
        summary: dict[str, Any] = {
            "recipe": str(loaded.path),
            "sha256": loaded.sha256,
            "valid": True,
            "release": r.release.model_dump(mode="json"),
            "stages": {k: v.model_dump(mode="json") for k, v in r.stages.items()},
            "merge_method": r.merge.get("merge_method"),
        }
        if r.quantize is not None and r.quantize.awq is not None:
            # AWQ shapes vs scheme from a stage's config.json: fails here, in seconds
            from medrelease.quantize.awq.preflight import recipe_preflight

            summary["awq"] = recipe_preflight(loaded)
        if as_json:
            print_json(summary)
        else:
            out_console.print(
                f"[green]ok[/green] {recipe}: release {r.release.name} {r.release.version}, "
                f"{len(r.stages)} stages, merge_method {r.merge.get('merge_method')}"
            )
            awq = summary.get("awq")
            if awq and awq.get("checked"):
                out_console.print(
                    f"AWQ: group size {awq['group_size']}, {awq['layers']} layers "
                    f"(shapes of stage {awq['stage']!r})"
                )
                for note in awq["notes"]:
                    out_console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
            elif awq:
                out_console.print(f"AWQ: {awq['detail']}", soft_wrap=True)
