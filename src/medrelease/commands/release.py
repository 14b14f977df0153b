"""`medrelease release RECIPE`: merge -> gate -> quantize -> card -> publish, cached."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medrelease.commands.common import (
    AllowFailedGatesOpt,
    AllowOverriddenOpt,
    DryRunOpt,
    EndpointOpt,
    ExecutorOpt,
    JsonOpt,
    OverlayOpt,
    RayAddressOpt,
    RecipeArg,
    ReviewOpt,
    SetOpt,
    StageOpt,
    TargetOpt,
    ThreadsOpt,
    WorkdirOpt,
)

if TYPE_CHECKING:
    from medrelease.pipeline.run import ReleaseRun
    from medrelease.recipe.loaded import LoadedRecipe

SUMMARY = "Run every step; skip those whose inputs are unchanged."
EXAMPLES = (
    "medrelease release merges/med-advisor-4b.yaml --dry-run   # everything but the upload",
    "medrelease release merges/med-advisor-4b.yaml --from quantize -t dir://export",
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
            None,
            "--from",
            metavar="STEP",
            help="re-run from this step on (the steps `medrelease status` lists, in order)",
        ),
        only: list[str] = typer.Option(
            [], "--only", metavar="STEP", help="run just this step (repeatable)"
        ),
        force: bool = typer.Option(
            False, "--force", help="run every step again, even if its inputs are unchanged"
        ),
        no_publish: bool = typer.Option(False, "--no-publish", help="stop before publishing"),
        dry_run: bool = DryRunOpt,
        target: str | None = TargetOpt,
        endpoint: str | None = EndpointOpt,
        review: bool = ReviewOpt,
        allow_failed_gates: bool = AllowFailedGatesOpt,
        threads: int = ThreadsOpt,
        allow_overridden_stages: bool = AllowOverriddenOpt,
        executor: str = ExecutorOpt,
        ray_address: str = RayAddressOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Run the whole release; steps whose inputs are unchanged are skipped.

        At the end it prints what each step did, then the gate table, the quant table and
        the publish plan or outcome, as the steps' own commands print them.
        """
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, out_console, print_json
        from medrelease.core.errors import GateFailed, UsageError
        from medrelease.pipeline import steps
        from medrelease.pipeline.report import release_table
        from medrelease.pipeline.run import run_release

        if force and (from_step or only):
            raise UsageError(
                "--force runs every step: it cannot be combined with --from or --only",
                hint="--from STEP re-runs that step and the ones after it; --only STEP just it",
            )
        # the gate rules' metrics are checked now, not after the merge (check_gates)
        loaded = load(recipe, stage, check_gates=True, overlays=overlay, sets=set_)
        try:
            run = run_release(
                loaded,
                workdir=workdir,
                reporter=Reporter(quiet=as_json),
                from_step=steps.step_names()[0] if force else from_step,  # --force: all
                only=only or None,
                publish=not no_publish,
                options=steps.ReleaseOptions(
                    executor=steps.ExecutorOptions(executor=executor, ray_address=ray_address),
                    publish=steps.PublishOptions(
                        target=target,
                        endpoint=endpoint,
                        dry_run=dry_run,
                        review=review,
                        allow_overridden_stages=allow_overridden_stages,
                    ),
                    threads=threads or None,
                    allow_failed_gates=allow_failed_gates,
                ),
            )
        except GateFailed as err:
            failed = getattr(err, "result", None)
            if failed is not None and not as_json:  # the table says by how much it failed
                from medrelease.gate.table import gate_table

                out_console.print(gate_table(failed.report))
            raise
        if as_json:
            print_json(run.summary())
            return
        out_console.print(release_table(run, title="release"))
        for table in step_tables(run, loaded, workdir):
            out_console.print(table)


def step_tables(run: ReleaseRun, loaded: LoadedRecipe, workdir: Path) -> list[object]:
    """The tables `gate`, `quantize` and `publish` print when run alone, for the steps this
    run ran or found current (a skipped step's table is the state the release is in)."""
    from medrelease.core.manifest import Manifest
    from medrelease.core.paths import ReleasePaths
    from medrelease.records.manifest import GATE, PUBLISH, QUANTIZE, read_step

    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    done = {s.name: s for s in run.steps if s.state in ("ran", "skipped")}
    tables: list[object] = []
    if GATE.name in done and paths.gate_report.is_file():
        from medrelease.gate.table import gate_table
        from medrelease.records.gate_report import read_gate_report

        tables.append(gate_table(read_gate_report(paths.gate_report)))
    if QUANTIZE.name in done:
        from medrelease.quantize.report import quant_table

        record = read_step(Manifest.load(paths.root), QUANTIZE.name, QUANTIZE.record)
        if record is not None:
            tables.append(quant_table(record))
    publish = done.get(PUBLISH.name)
    result = getattr(publish, "result", None)
    if result is not None:
        from medrelease.publish.report import card_diffs, outcome_table, plan_table

        if result.record.get("status") == "dry-run":
            from rich.text import Text

            tables.append(plan_table(result))
            tables += [Text(f"card diff for {repo}\n{diff}") for repo, diff in card_diffs(result)]
            if result.record.get("note"):
                tables.append(Text(str(result.record["note"])))
        else:
            tables.append(outcome_table(result))
    return tables
