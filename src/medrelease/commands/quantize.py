"""`medrelease quantize RECIPE`: GGUF (llama.cpp) and AWQ (llm-compressor) quants, each checked."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import (
    ExecutorOpt,
    ForceOpt,
    JsonOpt,
    OverlayOpt,
    RayAddressOpt,
    RecipeArg,
    SetOpt,
    StageOpt,
    ThreadsOpt,
    WorkdirOpt,
)

SUMMARY = "Quantize to GGUF and AWQ; keep the quants that pass checks."
EXAMPLES = (
    "medrelease quantize merges/afm-4.5b-openmed.yaml",
    "medrelease quantize merges/afm-4.5b-openmed.yaml --force --threads 8   # redo, 8 threads",
)


def register(app: typer.Typer) -> None:
    @app.command()
    def quantize(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        force: bool = ForceOpt,
        threads: int = ThreadsOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        executor: str = ExecutorOpt,
        ray_address: str = RayAddressOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Quantize merged/ to the recipe's GGUF types and AWQ; accept only quants that pass
        their checks against the merged model (exit code 5 if a required quant was rejected;
        an optional one, quantize.gguf.optional / quantize.awq.optional, is left out)."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, err_console, out_console, print_json
        from medrelease.core.step import StepResult
        from medrelease.quantize.step import quantize_release
        from medrelease.quantize.verdict import QuantRejected

        loaded = load(recipe, stage, overlays=overlay, sets=set_)

        def show(result: StepResult) -> None:
            if as_json:
                summary = result.summary()
                # StepResult.summary() lets the record's "status" overwrite "skipped": restore it
                summary["status"] = "skipped" if result.skipped else result.record.get("status")
                print_json(summary)
                return
            from medrelease.quantize.report import quant_table

            if result.skipped:
                out_console.print("inputs unchanged since the recorded run: nothing re-done")
            out_console.print(quant_table(result.record))
            out_console.print(f"manifest: {result.manifest}")

        try:
            result = quantize_release(
                loaded,
                workdir=workdir,
                force=force,
                threads=threads or None,
                reporter=Reporter(quiet=as_json),
                executor=executor,
                ray_address=ray_address,
            )
        except QuantRejected as err:  # the step decided (quantize/verdict.py): show, then exit 5
            if err.result is None:
                raise
            show(err.result)
            if not as_json:
                raise
            # one JSON document on stdout, the error line on stderr
            err_console.print(f"[bold red]error:[/bold red] {err}", soft_wrap=True)
            err_console.print(f"[cyan]fix:[/cyan] {err.hint}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        show(result)
