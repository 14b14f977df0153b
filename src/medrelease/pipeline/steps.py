"""The release steps in order, and how the pipeline calls each one.

Each entry knows whether the recipe asks for the step and how to run it. The steps themselves
live in their own packages; this table is the only place that lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.card.inputs import INPUTS as CARD_INPUTS
from medrelease.core.console import Reporter
from medrelease.core.inputs import StepInputs
from medrelease.core.step import StepResult
from medrelease.gate.inputs import INPUTS as GATE_INPUTS
from medrelease.merge.inputs import INPUTS as MERGE_INPUTS
from medrelease.publish.inputs import INPUTS as PUBLISH_INPUTS
from medrelease.quantize.inputs import INPUTS as QUANTIZE_INPUTS
from medrelease.recipe.load import LoadedRecipe

RunFn = Callable[[LoadedRecipe, Path, Reporter, dict[str, Any]], StepResult]


@dataclass(frozen=True)
class StepDef:
    name: str
    configured: Callable[[LoadedRecipe], bool]
    run: RunFn
    what: str
    inputs: StepInputs  # what its outputs depend on (declared once, in <step>/inputs.py)


def _merge(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: dict[str, Any]
) -> StepResult:
    from medrelease.merge.config_check import check_merge_block
    from medrelease.merge.step import merge_release

    check_merge_block(loaded)  # the pipeline loads recipes without it, to stay fast when cached
    return merge_release(loaded, workdir=workdir, force=True, reporter=reporter)


def _gate(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: dict[str, Any]
) -> StepResult:
    from medrelease.gate.step import gate_release

    return gate_release(
        loaded,
        workdir=workdir,
        reporter=reporter,
        executor=opts.get("executor"),
        ray_address=opts.get("ray_address"),
    )


def _quantize(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: dict[str, Any]
) -> StepResult:
    from medrelease.quantize.step import quantize_release

    return quantize_release(
        loaded,
        workdir=workdir,
        reporter=reporter,
        force=True,
        executor=opts.get("executor"),
        ray_address=opts.get("ray_address"),
    )


def _card(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: dict[str, Any]
) -> StepResult:
    from medrelease.card.step import card_release

    return card_release(loaded, workdir=workdir, reporter=reporter)


def _publish(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: dict[str, Any]
) -> StepResult:
    from medrelease.publish.step import publish_release

    return publish_release(
        loaded,
        workdir=workdir,
        reporter=reporter,
        target=opts.get("target"),
        endpoint=opts.get("endpoint"),
        dry_run=bool(opts.get("dry_run")),
        review=bool(opts.get("review")),
        allow_overridden_stages=bool(opts.get("allow_overridden_stages")),
    )


STEPS: tuple[StepDef, ...] = (
    StepDef("merge", lambda r: True, _merge, "merge the stages with mergekit", MERGE_INPUTS),
    StepDef(
        "gate",
        lambda r: r.recipe.gates is not None,
        _gate,
        "evaluate and check gate rules",
        GATE_INPUTS,
    ),
    StepDef(
        "quantize",
        lambda r: r.recipe.quantize is not None,
        _quantize,
        "quantize and check quants",
        QUANTIZE_INPUTS,
    ),
    StepDef("card", lambda r: True, _card, "render the model cards", CARD_INPUTS),
    StepDef("publish", lambda r: True, _publish, "publish to the Hub", PUBLISH_INPUTS),
)
STEP_NAMES = tuple(s.name for s in STEPS)
