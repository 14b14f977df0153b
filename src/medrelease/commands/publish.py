"""`medrelease publish RECIPE`: publish the gated release to the Hub (or dir://PATH)."""

from __future__ import annotations

from pathlib import Path

import typer

from medrelease.commands.common import (
    AllowFailedGatesOpt,
    AllowOverriddenOpt,
    DryRunOpt,
    EndpointOpt,
    JsonOpt,
    OverlayOpt,
    RecipeArg,
    ReviewOpt,
    SetOpt,
    StageOpt,
    TargetOpt,
    WorkdirOpt,
)

SUMMARY = "Publish the gated release (model, quants, cards) to the Hub."
EXAMPLES = (
    "medrelease publish merges/med-advisor-4b.yaml --dry-run    # the plan, nothing uploaded",
    "medrelease publish merges/med-advisor-4b.yaml -t dir://export/med-advisor-4b",
)


def register(app: typer.Typer) -> None:
    @app.command()
    def publish(
        recipe: Path = RecipeArg,
        workdir: Path = WorkdirOpt,
        target: str | None = TargetOpt,
        endpoint: str | None = EndpointOpt,
        dry_run: bool = DryRunOpt,
        review: bool = ReviewOpt,
        allow_failed_gates: bool = AllowFailedGatesOpt,
        allow_overridden_stages: bool = AllowOverriddenOpt,
        stage: list[str] = StageOpt,
        overlay: list[Path] = OverlayOpt,
        set_: list[str] = SetOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Publish the gated release (model, accepted quants, cards, manifest) to the Hub.

        One atomic commit per repo, then a version tag; a re-run with nothing changed makes
        no commit. The token comes only from HF_TOKEN or `hf auth login`.
        """
        from medrelease.commands.common import load
        from medrelease.core.console import Reporter, err_console, out_console, print_json
        from medrelease.publish.step import publish_release

        loaded = load(recipe, stage, overlays=overlay, sets=set_)
        result = publish_release(
            loaded,
            workdir=workdir,
            reporter=Reporter(quiet=as_json),
            target=target,
            endpoint=endpoint,
            dry_run=dry_run,
            review=review,
            allow_failed_gates=allow_failed_gates,
            allow_overridden_stages=allow_overridden_stages,
        )
        if as_json:
            print_json(result.summary())
            return
        from medrelease.publish.report import card_diffs, outcome_table, plan_table

        if dry_run:
            out_console.print(plan_table(result))
            for repo, diff in card_diffs(result):
                out_console.print(f"[bold]card diff for {repo}[/bold]")
                out_console.print(diff, markup=False, highlight=False)
            if result.record.get("note"):
                err_console.print(result.record["note"])
            return
        out_console.print(outcome_table(result))
