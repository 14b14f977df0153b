"""The `sweep:` section of a recipe (owned by `medrelease sweep`).

sweep:
  space:                                   # paths into the `merge:` block
    - {path: models.0.parameters.weight, low: 0.1, high: 0.9}
    - {path: models.1.parameters.density, low: 0.3, high: 1.0, step: 0.1}
    - {path: parameters.lambda, low: 0.5, high: 2.0, log: true}
    - {path: merge_method, choices: [ties, dare_ties]}
  objectives:                              # gate metrics, computed on the search split
    - {metric: mmlu_medical/acc, direction: maximize}
  constraints: gates                       # the recipe's gate rules (default); or []
  extra_constraints:                       # more rules, same form as gates.rules
    - {metric: medical_safety/violation_rate, max: 0.05}
  search:                                  # items the search evaluates on, per gate task:
    mmlu_medical: {start: 50, count: 40}   # indices [50, 90) of each (sub)task's test docs;
                                           # the gate's `limit: 50` uses [0, 50): disjoint
    # or: mmlu_medical: {split: validation}  # another split of the dataset (all its items)
    # or: mmlu_medical: {holdout: {fraction: 0.3, seed: 7}}   # 30% drawn; the gate: the rest
  trials: 24
  timeout: 3600                            # seconds (optional)
  sampler: tpe                             # tpe | nsga2 | cmaes | grid | random
  seed: 7
  pruning: {increment: 10, p_threshold: 0.1}   # WilcoxonPruner; one objective only

Only the section's shape is checked here; what depends on the rest of the recipe (paths in the
merge block, tasks and limits of the gate) is checked by medrelease.sweep.check, with the line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from medrelease.gate.config import GateRule
from medrelease.recipe.base import Section

SAMPLERS = ("tpe", "nsga2", "cmaes", "grid", "random")


class SpaceParam(Section):
    """One searched value of the merge block: a float/int range or a list of choices."""

    path: str = Field(description="dotted path into `merge:`, list items by index")
    low: float | None = None
    high: float | None = None
    step: float | None = Field(default=None, gt=0, description="grid step of a range")
    log: bool = Field(default=False, description="sample the range on a log scale")
    int: bool = Field(default=False, description="integer values only")
    choices: list[Any] | None = None
    allow_negative: bool = Field(
        default=False, description="a weight range may go below 0 (task-vector negation)"
    )

    @model_validator(mode="after")
    def _shape(self) -> SpaceParam:
        is_range = self.low is not None or self.high is not None
        if is_range == (self.choices is not None):
            raise ValueError("give either low + high (a range) or choices (a list)")
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            if any(isinstance(c, (dict, list)) for c in self.choices):
                raise ValueError("choices must be plain values (numbers, strings, booleans)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        if self.int and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an integer range needs whole-number low and high")
        return self

    @property
    def name(self) -> str:
        """The Optuna parameter name: the path itself (unique within the space)."""
        return self.path


class Objective(Section):
    metric: str = Field(description="<task>/<metric> or <task>/<subtask>/<metric>")
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v.count("/") not in (1, 2):
            raise ValueError(f"metric {v!r} must be <task>/<metric> or <task>/<subtask>/<metric>")
        return v

    @property
    def task(self) -> str:
        return self.metric.split("/", 1)[0]


class Holdout(Section):
    """A seeded share of a task's documents for the search; the gate evaluates the rest."""

    fraction: float = Field(gt=0, lt=1, description="share of each subtask's documents searched")
    seed: int = Field(default=0, description="the draw's seed (the same draw on every machine)")


class SearchItems(Section):
    """The items of one gate task the search evaluates (of each subtask), either
    * `start` + `count`: documents [start, start + count) of the split the gate evaluates,
      which must come after the gate's `limit` items; or
    * `split` (with optional `start` / `count`): documents of another split of the task's
      dataset (MMLU's `validation`), the gate's test documents untouched; or
    * `holdout: {fraction, seed}`: a seeded share of each subtask's documents, the gate then
      evaluating the rest (medrelease.gate.documents draws both sides)."""

    start: int | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1)
    split: str | None = Field(
        default=None, description="a dataset split other than the gate's (e.g. validation)"
    )
    holdout: Holdout | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchItems:
        if self.holdout is not None:
            if self.start is not None or self.count is not None or self.split is not None:
                raise ValueError("a holdout takes no start, count or split (it draws the items)")
            return self
        if self.split is None and (self.start is None or self.count is None):
            raise ValueError(
                "give start + count (items of the gate's split after its `limit`), split "
                "(another split of the dataset, e.g. {split: validation}) or holdout "
                "({holdout: {fraction: 0.3, seed: 7}})"
            )
        return self

    def indices(self, available: int | None) -> list[int]:
        """The searched document indices, given how many the split has (None: unknown)."""
        start = self.start or 0
        if self.count is not None:
            return list(range(start, start + self.count))
        assert available is not None, "a split without `count` needs its document count"
        return list(range(start, available))


class Pruning(Section):
    increment: int = Field(
        default=10,
        ge=1,
        description="the pruner is asked after every this many scored items of the objective's "
        "task (inside its one lm-eval run)",
    )
    p_threshold: float = Field(
        default=0.1, gt=0, lt=1, description="WilcoxonPruner: prune when p < this"
    )
    enabled: bool = True


class SweepConfig(Section):
    space: list[SpaceParam] = Field(min_length=1)
    objectives: list[Objective] = Field(min_length=1)
    constraints: Literal["gates", "none"] = Field(
        default="gates", description="gates: the recipe's gate rules are constraints"
    )
    extra_constraints: list[GateRule] = Field(default_factory=list)
    search: dict[str, SearchItems] = Field(description="gate task label -> searched items")
    trials: int = Field(default=20, ge=1, description="trials of the whole study")
    timeout: float | None = Field(default=None, gt=0, description="seconds per run")
    sampler: Literal["tpe", "nsga2", "cmaes", "grid", "random"] | None = Field(
        default=None, description="default: tpe for one objective, nsga2 for several"
    )
    seed: int = 0
    pruning: Pruning | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        paths = [p.path for p in self.space]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ValueError(f"space: path(s) {dup} listed twice")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError("objectives: a metric is listed twice")
        if not self.search:
            raise ValueError("search: name at least one gate task and its items")
        if self.pruning is not None and self.pruning.enabled and len(self.objectives) > 1:
            raise ValueError(
                "pruning works with one objective only (Optuna's pruners compare one value); "
                "drop `pruning` or keep one objective"
            )
        if self.sampler == "grid":
            for p in self.space:
                if p.choices is None and p.step is None and not p.int:
                    raise ValueError(f"the grid sampler needs `step` or `choices` for {p.path!r}")
        return self

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("tpe" if len(self.objectives) == 1 else "nsga2")
