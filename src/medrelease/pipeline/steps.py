"""The release steps in order, and how the pipeline calls each one.

Each entry is a step's one definition: its declaration (`<step>/inputs.py`: name and record
type, inputs, rerun rule, outputs on the Hub), whether the recipe asks for it, whether it
needs the gates, its preflight, its options and how to run it. The steps themselves live in
their own packages; this table is the only place that lists them all (docs/CONTRACTS.md,
"Adding a step").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from medrelease.card.inputs import INPUTS as CARD_INPUTS
from medrelease.core.console import Reporter
from medrelease.core.inputs import Rerun, StepInputs
from medrelease.core.manifest import StepRecord
from medrelease.core.step import StepResult
from medrelease.gate.inputs import INPUTS as GATE_INPUTS
from medrelease.merge.inputs import INPUTS as MERGE_INPUTS
from medrelease.publish.inputs import INPUTS as PUBLISH_INPUTS
from medrelease.quantize.inputs import INPUTS as QUANTIZE_INPUTS
from medrelease.recipe.loaded import LoadedRecipe

# what `release` asks of every step it runs: it has judged the step stale (or the user forced
# it), so the step re-runs and replaces its own outputs (core/inputs.py `Rerun`)
IN_RELEASE = Rerun.SKIP


@dataclass(frozen=True)
class NoOptions:
    """A step `release` runs without options (merge, card)."""


@dataclass(frozen=True)
class ExecutorOptions:
    """Where a step's units of work run (gate: evaluations; quantize: one per quant)."""

    executor: str | None = None  # local | ray; None: the recipe's, else local
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a local Ray instance


@dataclass(frozen=True)
class PublishOptions:
    target: str | None = None  # None / hub, an http(s) Hub URL, or dir://PATH
    endpoint: str | None = None  # None: HF_ENDPOINT, else the public Hub
    dry_run: bool = False  # print the plan only (never current: it writes nothing)
    review: bool = False  # pull requests instead of commits
    allow_failed_gates: bool = False  # publish a release whose gates failed (recorded)
    # publish a build whose stages are not the recipe's checkpoints (stand-ins; bannered)
    allow_overridden_stages: bool = False


@dataclass(frozen=True)
class GateOptions:
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    allow_failed_gates: bool = False  # a failed gate warns and the release goes on


@dataclass(frozen=True)
class QuantizeOptions:
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    threads: int | None = None  # CPU threads for llama.cpp (None: up to 2)


@dataclass(frozen=True)
class ReleaseOptions:
    """The options of `medrelease release`, one typed object per kind of step."""

    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    publish: PublishOptions = field(default_factory=PublishOptions)
    threads: int | None = None
    allow_failed_gates: bool = False  # --allow-failed-gates: for the gate and publish alike

    def gate(self) -> GateOptions:
        return GateOptions(self.executor, self.allow_failed_gates)

    def quantize(self) -> QuantizeOptions:
        return QuantizeOptions(self.executor, self.threads)

    def publish_step(self) -> PublishOptions:
        return replace(self.publish, allow_failed_gates=self.allow_failed_gates)


Opts = TypeVar("Opts")


@dataclass(frozen=True)
class StepDef(Generic[Opts]):
    """One step as the pipeline sees it; its name comes from its declaration (`inputs.id`)."""

    inputs: StepInputs  # declared once, in <step>/inputs.py
    what: str  # one line for the release log
    options: Callable[[ReleaseOptions], Opts]  # this step's options, out of release's
    # (loaded, workdir, reporter, options, force) -> result; `force`: --from/--only
    run: Callable[[LoadedRecipe, Path, Reporter, Opts, bool], StepResult[Any]]
    configured: Callable[[LoadedRecipe], bool] = lambda loaded: True
    # cards and publishing show the gates' numbers: a recipe without gates cannot ask for them
    needs_gates: bool = False
    # checks that take seconds and would otherwise fail after the steps before it ran
    preflight: Callable[[LoadedRecipe], None] | None = None
    # a run with these options writes nothing: it always runs and is not logged as done
    writes_nothing: Callable[[Opts], bool] = lambda options: False

    @property
    def name(self) -> str:
        return self.inputs.step

    @property
    def record(self) -> type[StepRecord]:
        return self.inputs.id.record

    @property
    def outputs_on_hub(self) -> bool:
        return self.inputs.outputs_on_hub


def _merge(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: NoOptions, force: bool
) -> StepResult[Any]:
    from medrelease.merge.config_check import check_merge_block
    from medrelease.merge.step import merge_release

    check_merge_block(loaded)  # the pipeline loads recipes without it, to stay fast when cached
    return merge_release(loaded, workdir=workdir, force=force, reporter=reporter, rerun=IN_RELEASE)


def _gate(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: GateOptions, force: bool
) -> StepResult[Any]:
    from medrelease.core.errors import GateFailed
    from medrelease.gate.step import gate_release

    try:
        return gate_release(
            loaded,
            workdir=workdir,
            reporter=reporter,
            executor=opts.executor.executor,
            ray_address=opts.executor.ray_address,
        )
    except GateFailed as err:
        result: StepResult[Any] | None = getattr(err, "result", None)
        if result is None or not opts.allow_failed_gates:
            raise
        # --allow-failed-gates: the release goes on; publish records it and the card shows it
        reporter.warn(f"{err} (going on: --allow-failed-gates)")
        return result


def _quantize(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: QuantizeOptions, force: bool
) -> StepResult[Any]:
    from medrelease.quantize.step import quantize_release

    return quantize_release(
        loaded,
        workdir=workdir,
        reporter=reporter,
        force=force,
        rerun=IN_RELEASE,
        threads=opts.threads,
        executor=opts.executor.executor,
        ray_address=opts.executor.ray_address,
    )


def _quantize_preflight(loaded: LoadedRecipe) -> None:
    # AWQ shape problems show in seconds from a stage's config, not after merge and gate
    from medrelease.quantize.awq.preflight import recipe_preflight

    recipe_preflight(loaded)


def _card(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: NoOptions, force: bool
) -> StepResult[Any]:
    from medrelease.card.step import card_release

    return card_release(loaded, workdir=workdir, reporter=reporter)


def _publish(
    loaded: LoadedRecipe, workdir: Path, reporter: Reporter, opts: PublishOptions, force: bool
) -> StepResult[Any]:
    from medrelease.publish.step import publish_release

    return publish_release(
        loaded,
        workdir=workdir,
        reporter=reporter,
        target=opts.target,
        endpoint=opts.endpoint,
        dry_run=opts.dry_run,
        review=opts.review,
        allow_failed_gates=opts.allow_failed_gates,
        allow_overridden_stages=opts.allow_overridden_stages,
    )


def _no_options(options: ReleaseOptions) -> NoOptions:
    return NoOptions()


def _gate_options(options: ReleaseOptions) -> GateOptions:
    return options.gate()


def _quantize_options(options: ReleaseOptions) -> QuantizeOptions:
    return options.quantize()


def _publish_options(options: ReleaseOptions) -> PublishOptions:
    return options.publish_step()


def _dry_run(options: PublishOptions) -> bool:
    return options.dry_run


STEPS: tuple[StepDef[Any], ...] = (
    StepDef(MERGE_INPUTS, "merge the stages with mergekit", _no_options, _merge),
    StepDef(
        GATE_INPUTS,
        "evaluate and check gate rules",
        _gate_options,
        _gate,
        configured=lambda r: r.recipe.gates is not None,
    ),
    StepDef(
        QUANTIZE_INPUTS,
        "quantize and check quants",
        _quantize_options,
        _quantize,
        configured=lambda r: r.recipe.quantize is not None,
        preflight=_quantize_preflight,
    ),
    StepDef(CARD_INPUTS, "render the model cards", _no_options, _card, needs_gates=True),
    StepDef(
        PUBLISH_INPUTS,
        "publish to the Hub",
        _publish_options,
        _publish,
        needs_gates=True,
        writes_nothing=_dry_run,
    ),
)


def step_names() -> tuple[str, ...]:
    """The steps' names in the release's order, read from `STEPS` when asked (so the CLI's
    `--from`/`--only`, `status` and their messages know a step from its registration alone)."""
    return tuple(s.name for s in STEPS)
