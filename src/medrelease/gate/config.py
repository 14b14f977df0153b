"""The `gates:` section of a recipe (owned by the gate step).

gates:
  backend: hf                  # lm-eval model type (hf, vllm, ...); model_args pass through
  baselines: [base]            # stage names evaluated next to the merged model
  data_dir: ./eval-data        # local dataset files for the presets (air-gapped use)
  tasks:
    - ifeval                                   # preset shorthand
    - {preset: mmlu_medical, num_fewshot: 5, limit: 50}
    - {name: demo_mcq, task_yaml: ./tasks/demo_mcq.yaml}   # custom lm-eval task
  rules:
    - {metric: ifeval/prompt_level_strict_acc, min: 0.30}
    - {metric: mmlu_medical/acc, vs: base, max_drop: 0.01}
    - {metric: mmlu_medical/anatomy/acc, vs: base, min_gain: 0.02, significant: true}
    - {metric: medical_safety/violation_rate, max: 0.05}
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from medrelease.core.suggest import did_you_mean
from medrelease.recipe.base import Section

PRESET_NAMES = (
    "ifeval",
    "mmlu_medical",
    "mmlu_pro",
    "medmcqa",
    "medqa",
    "pubmedqa",
    "medical_safety",
)


class GateTask(Section):
    """One evaluation: a preset (lm-eval's standard config) or a custom lm-eval task YAML."""

    preset: str | None = Field(default=None, description=f"one of {', '.join(PRESET_NAMES)}")
    task_yaml: str | None = Field(
        default=None, description="custom lm-eval task YAML (recipe-relative)"
    )
    name: str | None = Field(
        default=None, description="metric prefix; defaults to the preset/task name"
    )
    num_fewshot: int | None = Field(default=None, ge=0)
    limit: int | float | None = Field(
        default=None, gt=0, description="documents per task (or fraction)"
    )
    apply_chat_template: bool = False
    batch_size: int | None = Field(default=None, ge=1, description="overrides gates.batch_size")
    gen_kwargs: dict[str, Any] | None = Field(
        default=None, description="generation overrides, e.g. {max_gen_toks: 256}"
    )
    data_dir: str | None = Field(default=None, description="overrides gates.data_dir for this task")

    @model_validator(mode="after")
    def _one_source(self) -> GateTask:
        if (self.preset is None) == (self.task_yaml is None):
            raise ValueError("give exactly one of `preset` or `task_yaml`")
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise ValueError(
                f"unknown preset {self.preset!r}{did_you_mean(self.preset, PRESET_NAMES)} "
                f"(presets: {', '.join(PRESET_NAMES)}; or use task_yaml for a custom task)"
            )
        if self.name is not None and "/" in self.name:
            raise ValueError(f"task name {self.name!r} must not contain '/'")
        return self

    @property
    def label(self) -> str:
        """The metric prefix: `<label>/<metric>`."""
        if self.name:
            return self.name
        if self.preset:
            return self.preset
        from pathlib import PurePath

        return PurePath(str(self.task_yaml)).stem


class GateRule(Section):
    """A floor (`min`/`max`) or a comparison with a baseline (`vs` + `max_drop`/`min_gain`)."""

    metric: str = Field(description="<task>/<metric> or <task>/<subtask>/<metric>")
    min: float | None = None
    max: float | None = None
    vs: str | None = Field(default=None, description="baseline stage name")
    max_drop: float | None = Field(default=None, ge=0)
    min_gain: float | None = None
    significant: bool = Field(
        default=False,
        description="decide on the paired-bootstrap confidence interval instead of the point value",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    higher_is_better: bool | None = Field(
        default=None, description="override lm-eval's direction for this metric"
    )

    @model_validator(mode="after")
    def _shape(self) -> GateRule:
        floor = self.min is not None or self.max is not None
        compare = self.max_drop is not None or self.min_gain is not None
        if floor and (compare or self.vs is not None):
            raise ValueError(
                "a rule is either a floor (min/max) or a comparison (vs + max_drop/min_gain)"
            )
        if not floor and not compare:
            raise ValueError("a rule needs min, max, or vs with max_drop or min_gain")
        if compare and self.vs is None:
            raise ValueError("max_drop/min_gain need `vs: <baseline stage>`")
        if self.vs is not None and not compare:
            raise ValueError("`vs` needs max_drop or min_gain")
        if self.max_drop is not None and self.min_gain is not None:
            raise ValueError("give one of max_drop or min_gain per rule")
        if self.significant and floor:
            raise ValueError("`significant` applies to comparisons with a baseline only")
        if self.metric.count("/") not in (1, 2):
            raise ValueError(
                f"metric {self.metric!r} must be <task>/<metric> or <task>/<subtask>/<metric>"
            )
        return self

    @property
    def kind(self) -> Literal["min", "max", "max_drop", "min_gain"]:
        if self.min is not None:
            return "min"
        if self.max is not None:
            return "max"
        return "max_drop" if self.max_drop is not None else "min_gain"

    @property
    def task(self) -> str:
        return self.metric.split("/", 1)[0]


class GatesConfig(Section):
    backend: str = Field(default="hf", description="lm-eval model type: hf | vllm | ...")
    model_args: dict[str, Any] = Field(default={}, description="extra lm-eval model_args")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    batch_size: int | str = Field(default=8, description="lm-eval batch size (or 'auto')")
    baselines: list[str] = Field(default=[], description="stage names evaluated as baselines")
    data_dir: str | None = Field(default=None, description="local dataset files for presets")
    tasks: list[GateTask] = Field(default_factory=list)
    rules: list[GateRule] = Field(default_factory=list)
    bootstrap_iters: int = Field(default=2000, ge=100, description="paired-bootstrap resamples")
    seed: int = Field(default=1234, description="seed of the paired bootstrap")
    # Where the units run does not change a number of the report, so it is left out of
    # model_dump (exclude=True): the gate's inputs digest, and so staleness, ignore it.
    executor: Literal["local", "ray"] = Field(
        default="local",
        exclude=True,
        description="where evaluation units run: local (this process) | ray (a Ray cluster; "
        "--executor overrides)",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v: int | str) -> int | str:
        # lm-eval takes a positive int, "auto" or "auto:N"; anything else fails when the first
        # model is built (after the merge), with a bare ValueError
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        if isinstance(v, str) and v.isdigit() and int(v) >= 1:
            return int(v)
        if isinstance(v, str) and re.fullmatch(r"auto(:[1-9][0-9]*)?", v):
            return v
        raise PydanticCustomError(
            "batch_size",
            "{got} is not a batch size: a positive whole number, 'auto' or 'auto:N'",
            {
                "got": repr(v),
                "fix": "e.g. batch_size: 8, or 'auto' (lm-eval picks the largest that fits; "
                "'auto:4' recomputes it 4 times)",
            },
        )

    @field_validator("tasks", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out: list[Any] = []
        for item in v:
            if isinstance(item, str):
                is_yaml = item.endswith((".yaml", ".yml"))
                out.append({"task_yaml": item} if is_yaml else {"preset": item})
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _consistent(self) -> GatesConfig:
        labels = [t.label for t in self.tasks]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"task name(s) {sorted(dup)} used twice: give each a distinct `name`")
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError("baselines are listed twice")
        for rule in self.rules:
            if rule.task not in labels:
                raise ValueError(
                    f"rule on {rule.metric!r}: no task named {rule.task!r} in gates.tasks"
                    f"{did_you_mean(rule.task, labels)}"
                )
            if rule.vs is not None and rule.vs not in self.baselines:
                raise ValueError(
                    f"rule on {rule.metric!r}: {rule.vs!r} is not in gates.baselines "
                    f"({', '.join(self.baselines) or 'none'})"
                )
        return self
