"""Options shared by the step commands, and the one way a command loads its recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medrelease.core.errors import UsageError

if TYPE_CHECKING:
    from medrelease.recipe.loaded import LoadedRecipe

RecipeArg = typer.Argument(
    ..., metavar="RECIPE", help="release recipe (YAML), e.g. merges/afm-4.5b-openmed.yaml"
)
WorkdirOpt = typer.Option(
    Path("build"),
    "--workdir",
    "-w",
    metavar="DIR",
    help="where release folders are written",
    show_default=True,
)
ExecutorOpt = typer.Option(
    None,
    "--executor",
    metavar="local|ray",
    help="where units of work run (gate: evaluations; quantize: one per quant): local "
    "(default, or the recipe's gates.executor / quantize.executor) or ray (a Ray cluster)",
)
RayAddressOpt = typer.Option(
    None,
    "--ray-address",
    metavar="HOST:PORT",
    help="Ray cluster for --executor ray (default: RAY_ADDRESS, else a local Ray instance)",
)
JsonOpt = typer.Option(False, "--json", help="print a machine-readable JSON summary on stdout")
StageOpt = typer.Option(
    [],
    "--stage",
    "-s",
    metavar="NAME=SOURCE",
    help="override a stage source: NAME=PATH or NAME=owner/repo[@rev] (repeatable); "
    "used to run a recipe on stand-in checkpoints",
)

# Options that mean the same on several commands are defined once, here, so their names,
# short forms and wording agree everywhere they appear.
ForceOpt = typer.Option(
    False,
    "--force",
    help="run the step again and replace its outputs, even if its inputs are unchanged",
)
ThreadsOpt = typer.Option(
    0,
    "--threads",
    metavar="N",
    help="CPU threads for llama.cpp's quantizer and checks (0: every core this process may use)",
)
TargetOpt = typer.Option(
    None,
    "--target",
    "-t",
    metavar="TARGET",
    help="where to publish: hub (default: --endpoint), an http(s) Hub URL, or dir://PATH",
)
EndpointOpt = typer.Option(
    None,
    "--endpoint",
    metavar="URL",
    help="Hub API endpoint for --target hub (default: HF_ENDPOINT, else https://huggingface.co)",
)
DryRunOpt = typer.Option(
    False,
    "--dry-run",
    help="publish nothing: print the plan (repos, files, sizes, tag, card diff)",
)
ReviewOpt = typer.Option(
    False, "--review", help="open a pull request per repo instead of committing to main"
)
AllowFailedGatesOpt = typer.Option(
    False,
    "--allow-failed-gates",
    help="publish although gates failed (recorded in the manifest and on the card)",
)
AllowOverriddenOpt = typer.Option(
    False,
    "--allow-overridden-stages",
    help="publish a build made from checkpoints that are not the recipe's (--stage or overlay "
    "stand-ins): every card and manifest.json then carry a banner naming those stages",
)

OverlayOpt = typer.Option(
    [],
    "--overlay",
    metavar="FILE",
    help="YAML deep-merged over the recipe (repeatable), e.g. tiny eval data for stand-ins",
)
SetOpt = typer.Option(
    [],
    "--set",
    metavar="PATH=VALUE",
    help="change one recipe value: PATH=YAML, e.g. gates.tasks.0.limit=8 (repeatable)",
)


def parse_overrides(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, src = v.partition("=")
        if not sep or not name or not src:
            raise UsageError(
                f"--stage {v!r} is not NAME=SOURCE", hint="e.g. --stage sft=./checkpoints/sft"
            )
        out[name.strip()] = src.strip()
    return out


def load(
    recipe: Path,
    stages: list[str],
    *,
    check_merge: bool = False,
    check_gates: bool = False,
    overlays: list[Path] | None = None,
    sets: list[str] | None = None,
) -> LoadedRecipe:
    """Load for a step command. Only `merge` (and `validate`) need the mergekit block checked,
    which imports mergekit and torch; the other steps skip that cost. `check_gates`: the gate
    rules' metrics against the task YAMLs (`release` and `merge`: before hours of work)."""
    from medrelease.pipeline.recipes import load_recipe

    return load_recipe(
        recipe,
        overrides=parse_overrides(stages),
        check_merge=check_merge,
        check_gates=check_gates,
        overlays=overlays,
        sets=sets,
    )
