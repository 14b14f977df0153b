"""`medrelease demo`: the whole release, offline, on tiny stand-in models."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import JsonOpt

SUMMARY = "Run a complete offline release on tiny stand-in models."
EXAMPLES = (
    "medrelease demo",
    "medrelease demo --workdir /tmp/demo --json",
)


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workdir: Path = typer.Option(
            Path("build/demo"),
            "--workdir",
            "-w",
            metavar="DIR",
            help="where the demo writes everything",
        ),
        sweep: bool = typer.Option(
            False,
            "--sweep",
            help="instead of the release: a small merge sweep (6 trials) on the stand-ins, "
            "the demo recipe with the overlay data/demo/sweep.yaml (see docs/sweep.md)",
        ),
        as_json: bool = JsonOpt,
    ) -> None:
        """Run a complete offline release of tiny stand-in models into a local Hub server."""
        from medrelease.core.console import Reporter, out_console, print_json

        if sweep:
            _demo_sweep(workdir, as_json)
            return
        from medrelease.gate.table import gate_table
        from medrelease.pipeline.demo import run_demo
        from medrelease.pipeline.report import release_table
        from medrelease.records.gate_report import read_gate_report

        result = run_demo(workdir, reporter=Reporter(quiet=as_json))
        if as_json:
            print_json(result.summary())
            return
        root = result.workdir / result.loaded.recipe.release.name
        out_console.print(release_table(result.run, title="demo release"))
        report = root / "gates" / "report.json"
        if report.is_file():
            out_console.print(gate_table(read_gate_report(report)))
        out_console.print(
            "\n[bold]Where everything is[/bold]\n"
            f"  merged model   {root / 'merged'}\n"
            f"  gate report    {report}\n"
            f"  quants         {root / 'quant'}\n"
            f"  model cards    {root / 'card'}\n"
            f"  manifest       {root / 'manifest.json'}\n"
            f"  local Hub      {result.hub_root} (served at {result.hub_url} during the run)\n"
            "  run `medrelease demo` again: nothing changed, so every step is skipped"
        )


def _demo_sweep(workdir: Path, as_json: bool) -> None:
    """The demo's stand-ins (built or reused), swept with the demo recipe + sweep overlay."""
    from medrelease.core.console import Reporter, out_console, print_json
    from medrelease.pipeline.demo import demo_sweep_recipe
    from medrelease.sweep.report import render_table
    from medrelease.sweep.study import run_sweep

    reporter = Reporter(quiet=as_json)
    workdir = workdir.resolve()
    result = run_sweep(demo_sweep_recipe(workdir, reporter), workdir=workdir, reporter=reporter)
    if as_json:
        print_json(result.report)
        return
    out_console.print(render_table(result.report))
    out_console.print(
        f"report {result.report_path}, plot {result.report_path.parent / 'front.png'}\n"
        "adopt a trial: medrelease sweep RECIPE --adopt N -o NEW.yaml (with the recipe's "
        "--stage/--overlay options)"
    )
