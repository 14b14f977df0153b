"""`medrelease sweep RECIPE`: choose the merge by a gated search; --show, --adopt TRIAL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        trials: int | None = typer.Option(
            None, "--trials", min=1, help="trials of the whole study (default: sweep.trials)"
        ),
        timeout: float | None = typer.Option(
            None, "--timeout", min=1, help="stop asking for trials after this many seconds"
        ),
        storage: str | None = typer.Option(
            None,
            "--storage",
            metavar="URL",
            help="Optuna storage URL (default: sqlite in <workdir>/<release>/sweep/study.db)",
        ),
        parallel: int | None = typer.Option(
            None,
            "--parallel",
            min=1,
            help="trials run at once (default: 1 locally, the rest of the budget with Ray)",
        ),
        executor: str = ExecutorOpt,
        ray_address: str = RayAddressOpt,
        show: bool = typer.Option(False, "--show", help="print the last run's table again"),
        adopt: int | None = typer.Option(
            None,
            "--adopt",
            metavar="TRIAL",
            help="write the recipe with this trial's merge block (comments kept)",
        ),
        output: Path | None = typer.Option(
            None,
            "--output",
            "-o",
            metavar="NEW.yaml",
            help="with --adopt: write here (beside the recipe: its relative paths stay valid) "
            "instead of in place",
        ),
        as_json: bool = JsonOpt,
    ) -> None:
        """Search the merge block (Optuna) for the best merge by the gate's metrics on a search
        split disjoint from the gate's items. Re-running continues the same study."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, out_console, print_json
        from medrelease.sweep.report import read_report, render_table
        from medrelease.sweep.study import sweep_dir

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        if show or adopt is not None:
            from medrelease.sweep.check import check_sweep

            check_sweep(loaded)
            report = read_report(sweep_dir(loaded, workdir))
            if adopt is not None:
                _adopt(Path(recipe), report, adopt, output, as_json)
                return
            if as_json:
                print_json(report)
            else:
                out_console.print(render_table(report))
            return
        from medrelease.sweep.study import run_sweep

        result = run_sweep(
            loaded,
            workdir=workdir,
            trials=trials,
            timeout=timeout,
            storage=storage,
            executor=executor,
            ray_address=ray_address,
            parallel=parallel,
            reporter=Reporter(quiet=as_json),
        )
        if as_json:
            print_json(result.report)
            return
        out_console.print(render_table(result.report))
        out_console.print(f"report: {result.report_path}")


def _adopt(recipe: Path, report: Any, trial: int, output: Path | None, as_json: bool) -> None:
    """Write the recipe with `trial`'s merge block; warn when it broke a constraint."""
    from medrelease.core.console import err_console, out_console, print_json
    from medrelease.sweep.adopt import adopt as adopt_trial

    written = adopt_trial(recipe, dict(report), trial, output)
    entry = next(t for t in report["trials"] if t["number"] == trial)
    if not entry["feasible"]:
        err_console.print(
            f"[yellow]warning:[/yellow] trial {trial} broke a constraint on the "
            f"search split ({entry['reason']}); its release may fail the gate",
            soft_wrap=True,
        )
    if as_json:
        print_json({"adopted": trial, "recipe": str(written)})
    else:
        out_console.print(f"trial {trial} adopted: {written}")


# `medrelease --help`'s line and the examples under "Examples:" (commands/__init__.py)
SUMMARY = "Choose the merge by a gated search (Optuna); --show, --adopt."
EXAMPLES = (
    "medrelease sweep merges/med-advisor-4b.yaml --trials 24    # run or continue the study",
    "medrelease sweep merges/med-advisor-4b.yaml --adopt 7 -o merges/med-advisor-4b-swept.yaml",
)
