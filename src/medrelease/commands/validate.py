"""`medrelease validate RECIPE`: check a recipe without loading any weights or evaluating.

Everything knowable from the recipe, its task YAMLs and the stages' config.json is checked:
the schema, names across sections (baselines are stages), the mergekit block (its keys, the
method's parameters, weights that cannot normalise), gate rules against the metrics their tasks
compute, the license id, strict UTF-8. Every problem is listed with its file:line (or the
`--set` that caused it) and its fix. It reads the workdir (to say whether the release can be
written there) and never writes to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from medrelease.commands.common import (
    JsonOpt,
    OverlayOpt,
    RecipeArg,
    SetOpt,
    StageOpt,
    WorkdirOpt,
)


def workdir_state(workdir: Path, release: str) -> dict[str, Any]:
    """Whether the release folder could be written, found without writing anything."""
    root = workdir / release
    probe = next((p for p in (root, workdir, *workdir.absolute().parents) if p.exists()), None)
    if probe is None or not probe.is_dir():
        state = "not a folder" if probe is not None else "missing"
    elif not os.access(probe, os.W_OK | os.X_OK):
        state = "not writable"
    else:
        state = "exists" if root.is_dir() else "will be created"
    return {"workdir": str(workdir), "release_folder": str(root), "state": state, "at": str(probe)}


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Check a recipe without loading weights or writing anything.

        Lists every problem with its file:line and fix: the schema, stage names, the mergekit
        block and its weights, gate rules against their tasks' metrics, the license id, files
        the recipe names, UTF-8.
        """
        from medrelease.commands.common import parse_overrides
        from medrelease.core.console import out_console, print_json
        from medrelease.pipeline.recipes import load_recipe

        loaded = load_recipe(
            recipe,
            overrides=parse_overrides(stage),
            overlays=overlay,
            sets=set_,
            check_merge=True,
            check_gates=True,
        )
        r = loaded.recipe
        summary: dict[str, Any] = {
            "recipe": str(loaded.path),
            "sha256": loaded.sha256,
            "valid": True,
            "release": r.release.model_dump(mode="json"),
            "stages": {k: v.model_dump(mode="json") for k, v in r.stages.items()},
            "merge_method": r.merge.get("merge_method"),
            "workdir": workdir_state(workdir, r.release.name),
        }
        if r.quantize is not None and r.quantize.awq is not None:
            # AWQ shapes vs scheme from a stage's config.json: fails here, in seconds
            from medrelease.quantize.awq.preflight import recipe_preflight

            summary["awq"] = recipe_preflight(loaded)
        if as_json:
            print_json(summary)
            return
        out_console.print(
            f"[green]ok[/green] {recipe}: release {r.release.name} {r.release.version}, "
            f"{len(r.stages)} stages, merge_method {r.merge.get('merge_method')}",
            soft_wrap=True,
            markup=True,
        )
        wd = summary["workdir"]
        if wd["state"] in ("not writable", "not a folder", "missing"):
            out_console.print(
                f"[yellow]note:[/yellow] the release folder {wd['release_folder']} cannot be "
                f"written ({wd['at']} is {wd['state']}); pass --workdir DIR on a writable disk",
                soft_wrap=True,
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


# `medrelease --help`'s line and the examples under "Examples:" (commands/__init__.py)
SUMMARY = "Check a recipe without loading any weights."
EXAMPLES = (
    "medrelease validate merges/afm-4.5b-openmed.yaml",
    "medrelease validate merges/qwen-4b-trad.yaml --workdir /data/build --json",
)
