"""`medrelease card RECIPE`: render the model cards from the recipe, manifest and gate report."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import JsonOpt, OverlayOpt, RecipeArg, SetOpt, StageOpt, WorkdirOpt

DiffOpt = typer.Option(
    False, "--diff", help="show what changed against the cards published on the Hub"
)
DiffAgainstOpt = typer.Option(
    None,
    "--diff-against",
    metavar="FILE",
    help="show what changed against this local README.md instead of the Hub",
    dir_okay=False,
)
SUMMARY = "Render the model cards and the chart from the evidence."
EXAMPLES = (
    "medrelease card merges/med-advisor-4b.yaml --diff   # and what changed vs the Hub",
    "medrelease card merges/med-advisor-4b.yaml --variables > vars.json   # for templates",
)
VariablesOpt = typer.Option(
    False, "--variables", help="print the variables templates can use (JSON) and exit"
)


def register(app: typer.Typer) -> None:
    @app.command()
    def card(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        diff: bool = DiffOpt,
        diff_against: Path | None = DiffAgainstOpt,
        variables: bool = VariablesOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Render card/README.md (+ GGUF / AWQ repo cards and metrics.png) from the evidence."""
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, print_json

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        if variables:
            from medrelease.card.step import card_context

            print_json(card_context(loaded, workdir=workdir))
            return
        from medrelease.card.step import card_release

        result = card_release(loaded, workdir=workdir, reporter=Reporter(quiet=as_json))
        diffs = None
        if diff or diff_against is not None:
            from medrelease.card.report import diff_rendered

            diffs = diff_rendered(loaded, workdir=workdir, against=diff_against)
        if as_json:
            summary = result.summary()
            summary.pop("metadata", None)
            if diffs is not None:
                summary["diff"] = [d.as_dict() for d in diffs]
            print_json(summary)
            return
        from medrelease.card.report import print_card_result

        print_card_result(result, diffs)
