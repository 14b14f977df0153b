"""`medrelease gate RECIPE`: evaluate merged/ and the baselines; exit 4 when a rule fails."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import (
    ExecutorOpt,
    JsonOpt,
    OverlayOpt,
    RayAddressOpt,
    RecipeArg,
    SetOpt,
    StageOpt,
    WorkdirOpt,
)

SUMMARY = "Evaluate merged/ and the baselines; apply the gate rules."
EXAMPLES = (
    "medrelease gate merges/med-advisor-4b.yaml",
    "medrelease gate merges/med-advisor-4b.yaml --limit 20 --json   # quick look, 20 docs/task",
)


def register(app: typer.Typer) -> None:
    @app.command()
    def gate(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        limit: float | None = typer.Option(
            None,
            "--limit",
            metavar="N",
            help="documents per task for every task (quick checks; <1 = fraction)",
        ),
        no_cache: bool = typer.Option(
            False, "--no-cache", help="re-evaluate everything (the cache is still refreshed)"
        ),
        executor: str = ExecutorOpt,
        ray_address: str = RayAddressOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Run lm-evaluation-harness on merged/ and the baselines; apply the gate rules."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, out_console, print_json
        from medrelease.core.errors import GateFailed
        from medrelease.gate.step import gate_release
        from medrelease.gate.table import gate_table

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        lim: int | float | None = None
        if limit is not None:
            lim = int(limit) if limit >= 1 and float(limit).is_integer() else limit
        try:
            result = gate_release(
                loaded,
                workdir=workdir,
                reporter=Reporter(quiet=as_json),
                use_cache=not no_cache,
                limit=lim,
                executor=executor,
                ray_address=ray_address,
            )
        except GateFailed as err:
            failed = getattr(err, "result", None)
            if failed is None:
                raise
            if not as_json:
                out_console.print(gate_table(failed.report))
                raise
            # one JSON document on stdout (the report), the error line on stderr, exit 4
            from medrelease.core.console import err_console

            print_json(failed.report)
            err_console.print(f"[bold red]error:[/bold red] {err}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        if as_json:
            print_json(result.report)
            return
        out_console.print(gate_table(result.report))
