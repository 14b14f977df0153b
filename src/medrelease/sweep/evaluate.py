"""Evaluate a model on the search split with the gate's own code.

Each searched task is one lm-eval run on chosen document indices (lm-eval's `samples`),
extracted by `gate.runner.extract_outcome` and cached in the gate's evaluation cache under a
key that names those indices: a baseline is evaluated once per study (and a trial whose weights
equal an earlier one's is served from the cache). A pruned trial's run is watched item by item
(medrelease.gate.live_items) and stopped inside lm-eval; `partial_outcome` turns the items it
scored into an outcome, and `restrict` cuts a baseline's outcome to the same items.

Every trial's merged folder has the same config, so a model takes the network the previous
one gave back and copies its own weights into it instead of building it
(medrelease.gate.kept_network: the same values as a fresh load).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError, VerificationError
from medrelease.gate.cache import EvalCache, cache_key
from medrelease.gate.config import GatesConfig
from medrelease.gate.forward_clock import ForwardClock, clock_for
from medrelease.gate.live_items import BOOKKEEPING, OnItem, StopEvaluation, watch_items
from medrelease.gate.models import GateModel
from medrelease.gate.runner import extract_outcome, make_lm, run_lm_eval
from medrelease.gate.tasks import ResolvedTask
from medrelease.sweep.split import SearchPlan


@dataclass
class SearchTask:
    task: ResolvedTask  # the gate's task (or its other-split variant), `limit` dropped
    leaves: dict[str, list[int]]  # lm-eval leaf task -> searched document indices
    fingerprint: str
    text: str = ""  # the split in words (report, card)
    form: str = "range"  # range | split | holdout (medrelease.sweep.split)
    split: str | None = None  # the dataset split searched, when not the gate's

    @property
    def total(self) -> int:
        return sum(len(ix) for ix in self.leaves.values())


def search_tasks(
    tasks: list[ResolvedTask], plans: dict[str, SearchPlan], work_dir: Path, base_dir: Path
) -> list[SearchTask]:
    out = []
    for task in tasks:
        plan = plans.get(task.label)
        if plan is None:
            continue
        if plan.split is not None:
            task = split_variant(task, plan.split, work_dir / "search-splits", base_dir)
        searched = replace(task, settings={**task.settings, "limit": None})
        out.append(
            SearchTask(searched, plan.leaves, task.fingerprint(), plan.text, plan.form, plan.split)
        )
    return out


def split_variant(task: ResolvedTask, split: str, work_dir: Path, base_dir: Path) -> ResolvedTask:
    """The task evaluating another split of its dataset: per leaf, a YAML that includes the
    leaf's own YAML (the gate's local-data override, or lm-eval's) and sets `test_split` (the
    split lm-eval evaluates), so prompts, metrics and few-shot split stay the task's."""
    import yaml

    from medrelease.gate.presets import lm_eval_tasks_dir
    from medrelease.gate.tasks import read_task_yaml

    gen = work_dir / task.label
    gen.mkdir(parents=True, exist_ok=True)
    for old in gen.glob("*.yaml"):
        old.unlink()
    own = task.include_paths[-1]  # the gate's generated YAMLs, if any (last include path)
    if task.preset is not None:
        pairs = []
        for leaf, yaml_file in task.preset.leaves:
            mine = own / f"{leaf}.yaml"
            pairs.append((leaf, mine if mine.is_file() else
                          lm_eval_tasks_dir() / task.preset.folder / yaml_file))  # fmt: skip
    else:
        assert task.spec.task_yaml is not None
        path = (base_dir / task.spec.task_yaml).resolve()
        leaf = str(read_task_yaml(path).get("task"))
        mine = own / f"{leaf}.yaml"
        pairs = [(leaf, mine if mine.is_file() and mine != path else path)]
    for leaf, include in pairs:
        text = yaml.safe_dump({"include": str(include), "task": leaf, "test_split": split})
        (gen / f"{leaf}.yaml").write_text(text, encoding="utf-8")
    return replace(
        task,
        include_paths=[*task.include_paths, gen],  # later include paths override earlier ones
        fingerprint_files=[*task.fingerprint_files, *sorted(gen.glob("*.yaml"))],
    )


@dataclass
class EvalSettings:
    """The gate's harness settings, fixed once per study (part of every cache key)."""

    gates: GatesConfig
    device: str
    dtype: dict[str, Any] | None
    cache_dir: Path

    def settings(self, stask: SearchTask, samples: dict[str, list[int]]) -> dict[str, Any]:
        return {
            **stask.task.settings,
            "backend": self.gates.backend,
            "model_args": self.gates.model_args,
            "device": self.device,
            "dtype": (self.dtype or {}).get("dtype"),
            "samples": {leaf: sorted(ix) for leaf, ix in samples.items()},
        }


class ModelEvaluator:
    """One model's search-split outcomes, a task at a time (the LM built on first need)."""

    def __init__(self, model: GateModel, ev: EvalSettings):
        self.model = model
        self.ev = ev
        self.cache = EvalCache(ev.cache_dir)
        self._lm: Any = None
        self.evaluated = 0
        self.cached = 0
        self.lm_eval_s = 0.0  # inside lm-eval: the forward passes and lm-eval's own work
        self._clock: ForwardClock | None = None  # the forward passes alone (hf backends)
        self._network_whole = True  # no evaluation ended in an error: the network may be kept

    @property
    def forward_s(self) -> float | None:
        """Seconds in the model's forward passes; None where they run outside this process."""
        return self._clock.seconds if self._clock is not None else None

    def _lm_for(self, batch_size: Any) -> Any:
        if self._lm is None:
            g = self.ev.gates
            self._lm = make_lm(
                g.backend,
                self.model.path,
                g.model_args,
                batch_size,
                self.ev.device,
                self.ev.dtype,
                keep_network=True,  # every trial's folder has the same config: one network
            )
            self._clock = clock_for(self._lm)
        return self._lm

    def outcome(
        self, stask: SearchTask, samples: dict[str, list[int]], on_item: OnItem | None = None
    ) -> dict[str, Any]:
        """The task's outcome on `samples`; `on_item` sees each item as lm-eval scores it (and
        may stop the run by raising). A cached outcome is returned whole, without `on_item`."""
        settings = self.ev.settings(stask, samples)
        key = cache_key(self.model.content_hash, stask.fingerprint, settings)
        hit = self.cache.get(key)
        if hit is not None:
            self.cached += 1
            return hit
        lm = self._lm_for(settings["batch_size"])
        started = time.perf_counter()
        try:
            with watch_items(lm, on_item) if on_item else nullcontext():
                raw = run_lm_eval(lm, stask.task, samples=settings["samples"])
        except StopEvaluation:
            raise  # raised between forward passes: the network is whole
        except BaseException:
            self._network_whole = False  # perhaps stopped inside a forward pass (its hooks)
            raise
        finally:
            self.lm_eval_s += time.perf_counter() - started
        out = extract_outcome(raw, stask.task)
        _require_items(out, settings["samples"], stask.task.label)
        material = {"model": self.model.content_hash, "task": stask.fingerprint, **settings}
        self.cache.put(key, out, {"sweep": True, **material})
        self.evaluated += 1
        return out

    def close(self) -> None:
        if self._clock is not None:
            self._clock.close()
        if self._lm is not None and self._network_whole and hasattr(self._lm, "give_back_network"):
            self._lm.give_back_network()  # for the next trial's model
        self._lm = None


def _require_items(outcome: dict[str, Any], samples: dict[str, list[int]], label: str) -> None:
    """lm-eval scored exactly the asked items: one more would put an item outside the search
    split (a gate item, for a hold-out) into the trial's numbers."""
    asked = {f"{leaf}:{doc}" for leaf, ix in samples.items() for doc in ix}
    scored = {item for per in outcome["samples"].values() for item in per}
    extra = sorted(scored - asked)
    if extra:
        raise VerificationError(
            f"lm-eval scored {len(extra)} item(s) of {label!r} outside the search split "
            f"(first: {extra[0]}); the trial's numbers would include them",
            hint="report this as a medrelease bug, with the recipe's sweep.search section",
        )


def partial_outcome(
    stask: SearchTask,
    logged: dict[str, list[dict[str, Any]]],
    directions: dict[str, dict[str, bool]],
) -> dict[str, Any]:
    """The outcome of the items a stopped run scored (`logged`: lm-eval leaf -> its logged
    samples; `directions`: leaf -> lm-eval's higher_is_better). Named by the gate's own
    extraction; only metrics with per-item values, as the mean of those items."""
    results: dict[str, dict[str, float]] = {}
    for leaf in stask.leaves:
        keys = {
            f"{m},{s['filter']}" for s in logged.get(leaf, []) for m in s if m not in BOOKKEEPING
        }
        results[leaf] = dict.fromkeys(sorted(keys), 0.0)
    top = stask.task.lm_task
    raw: dict[str, Any] = {"results": results, "samples": logged, "higher_is_better": directions}
    if top not in stask.leaves:  # a group: its own entry holds the metrics of its leaves
        raw["group_subtasks"] = {top: list(stask.leaves)}
        results[top] = {k: 0.0 for r in list(results.values()) for k in r}
    return restrict(extract_outcome(raw, stask.task))  # values from the items' values


def restrict(outcome: dict[str, Any], items: set[str] | None = None) -> dict[str, Any]:
    """`outcome` on `items` ("leaf:doc"; without: every item it holds): per-item metrics
    recomputed over them (the size-weighted mean lm-eval takes of a group, and the standard
    error of that mean), metrics without per-item values left out (they cannot be cut)."""
    kept = {
        name: {i: v for i, v in per.items() if items is None or i in items}
        for name, per in outcome["samples"].items()
    }
    metrics = {}
    for name, per in kept.items():
        if name in outcome["metrics"] and per:
            value, stderr = mean_and_stderr(per)
            metrics[name] = {**outcome["metrics"][name], "value": value, "stderr": stderr}
    samples = {n: per for n, per in kept.items() if n in metrics}
    return {
        **outcome,
        "n_samples": len({i for per in samples.values() for i in per}),
        "metrics": metrics,
        "samples": samples,
    }


def mean_and_stderr(per: dict[str, list[float]]) -> tuple[float, float | None]:
    num = sum(v[0] for v in per.values())
    den = sum(v[1] for v in per.values())
    mean = num / den if den else float("nan")
    scores = [v[0] / v[1] for v in per.values() if v[1]]
    if len(scores) < 2:
        return mean, None
    mu = sum(scores) / len(scores)
    var = sum((s - mu) ** 2 for s in scores) / (len(scores) - 1)
    return mean, math.sqrt(var / len(scores))


def item_scores(outcome: dict[str, Any], metric: str, leaves: list[str]) -> dict[int, float]:
    """Per-item values of `metric` keyed by a step number unique within the task (the
    WilcoxonPruner pairs trials on these steps: the same item, the same step)."""
    out: dict[int, float] = {}
    for item, (num, den) in (outcome["samples"].get(metric) or {}).items():
        leaf, _, doc = item.rpartition(":")
        if den and leaf in leaves:
            out[leaves.index(leaf) * 1_000_000 + int(doc)] = num / den
    return out


def require_metrics(
    wanted: list[tuple[str, tuple[Any, ...]]], outcomes: dict[str, dict[str, Any]], where: Any
) -> None:
    """An objective or constraint no searched task computes is a recipe error (exit 2)."""
    from medrelease.core.suggest import did_you_mean

    produced = {n for o in outcomes.values() for n in o["metrics"]}
    for metric, loc in wanted:
        if metric not in produced:
            task = metric.split("/", 1)[0]
            mine = sorted(n for n in produced if n.startswith(task + "/"))
            raise RecipeError(
                f"no gate task computes {metric!r}{did_you_mean(metric, produced)}",
                where=where(loc) if callable(where) else None,
                hint=f"metrics of {task}: {', '.join(mine) or 'none'}",
            )
