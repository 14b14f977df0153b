"""`medrelease release RECIPE`: merge -> gate -> quantize -> card -> publish, cached."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import (
    AllowOverriddenOpt,
    ExecutorOpt,
    JsonOpt,
    OverlayOpt,
    RayAddressOpt,
    RecipeArg,
    SetOpt,
    StageOpt,
    WorkdirOpt,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def release(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        from_step: str = typer.Option(
            None, "--from", help="re-run from this step on (merge, gate, quantize, card, publish)"
        ),
        only: list[str] = typer.Option(
            [], "--only", metavar="STEP", help="run just this step (repeatable)"
        ),
        no_publish: bool = typer.Option(False, "--no-publish", help="stop before publishing"),
        dry_run: bool = typer.Option(False, "--dry-run", help="publish step prints its plan only"),
        endpoint: str = typer.Option(
            None, "--endpoint", help="Hub API endpoint (default: HF_ENDPOINT or the public Hub)"
        ),
        target: str = typer.Option(None, "--target", help="publish target, e.g. dir://PATH"),
        review: bool = typer.Option(False, "--review", help="publish as pull requests"),
        allow_overridden_stages: bool = AllowOverriddenOpt,
        executor: str = ExecutorOpt,
        ray_address: str = RayAddressOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Run the whole release; steps whose inputs are unchanged are skipped."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, out_console, print_json
        from medrelease.pipeline.report import release_table
        from medrelease.pipeline.run import run_release

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        run = run_release(
            loaded,
            workdir=workdir,
            reporter=Reporter(quiet=as_json),
            from_step=from_step,
            only=only or None,
            publish=not no_publish,
            publish_options={
                "endpoint": endpoint,
                "target": target,
                "dry_run": dry_run,
                "review": review,
                "allow_overridden_stages": allow_overridden_stages,
                # the gate's and quantize's options travel in the same dict (pipeline/steps.py)
                "executor": executor,
                "ray_address": ray_address,
            },
        )
        if as_json:
            print_json(run.summary())
        else:
            out_console.print(release_table(run, title="release"))
