"""The metric names a gate task reports, known from its task YAML before anything is evaluated.

One naming rule serves both: `result_names` turns lm-eval's result keys ("acc,none") into our
metric names; the gate applies it to what lm-eval returned (gate/runner.py), and
`task_metric_names` applies it to the keys a task's YAML says lm-eval will return, so
`medrelease validate` can refuse a rule on a metric no task computes before hours of evaluation.
The YAML is read with lm-eval's own loader (its `include:` chain), its metrics with lm-eval's
defaults per output type.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrelease.core.errors import Problem
from medrelease.core.suggest import did_you_mean
from medrelease.gate.config import GateTask
from medrelease.gate.presets import PRESETS, lm_eval_tasks_dir, shipped_tasks_dir, subtask_of

if TYPE_CHECKING:
    from medrelease.recipe.loaded import LoadedRecipe


def result_names(keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """lm-eval result keys ("acc,none") -> (metric name for us, lm-eval key).

    A metric computed under several filters is named `<metric>_<filter>`; under one filter (or
    none) just `<metric>`."""
    pairs = []
    for key in keys:
        if "," not in key or key.split(",", 1)[0].endswith("_stderr"):
            continue
        metric, flt = key.split(",", 1)
        pairs.append((metric, flt, key))
    out: dict[str, tuple[str, str]] = {}
    for metric, flt, key in pairs:
        several = sum(1 for m, _, _ in pairs if m == metric) > 1
        name = f"{metric}_{flt}" if several and flt != "none" else metric
        out[name] = (metric, key)
    return out


# Group presets: the YAML whose aggregate_metric_list gives the group's own metrics
def _group_yaml(preset: str) -> Path | None:
    if preset == "mmlu_medical":
        return shipped_tasks_dir() / "presets" / "mmlu_medical.yaml"
    if preset == "mmlu_pro":
        return lm_eval_tasks_dir() / "mmlu_pro" / "_mmlu_pro.yaml"
    return None


def _read(path: Path) -> dict[str, Any] | None:
    """The task config with its includes merged, `!function`s left unresolved (no imports)."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # another lm-eval layout: the names cannot be known up front
        return None
    try:
        cfg = load_yaml(path, resolve_func=False)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    except Exception as exc:  # yaml errors: reported by the gate step itself, with its message
        if type(exc).__module__.startswith("yaml"):
            return None
        raise
    return cfg if isinstance(cfg, dict) else None


def _leaf_keys(cfg: dict[str, Any]) -> list[str] | None:
    """The result keys lm-eval reports for one task, or None when they cannot be known."""
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    if cfg.get("group") is not None or isinstance(cfg.get("task"), list):
        return None  # a group: its members are found by lm-eval's task index
    metric_list = cfg.get("metric_list")
    if metric_list is None:
        metrics = DEFAULT_METRIC_REGISTRY.get(str(cfg.get("output_type", "generate_until")))
        if metrics is None:
            return None
    else:
        metrics = [m.get("metric") if isinstance(m, dict) else None for m in metric_list]
        if not all(isinstance(m, str) and "/" not in m for m in metrics):
            return None  # a metric given as a function: named after it, at run time
    filters = cfg.get("filter_list")
    names = ["none"] if not filters else [f.get("name") for f in filters if isinstance(f, dict)]
    if not names or not all(isinstance(n, str) for n in names):
        return None
    return [f"{m},{f}" for m in metrics for f in names]


def _aggregate_keys(cfg: dict[str, Any]) -> list[str] | None:
    out: list[str] = []
    for agg in cfg.get("aggregate_metric_list") or []:
        if not isinstance(agg, dict) or not isinstance(agg.get("metric"), str):
            return None
        flts = agg.get("filter_list", "none")
        for flt in flts if isinstance(flts, list) else [flts]:
            out.append(f"{agg['metric']},{flt}")
    return out


def task_metric_names(spec: GateTask, base_dir: Path) -> set[str] | None:
    """Every metric name (`<label>/<metric>`, `<label>/<subtask>/<metric>`) the task will
    report, or None when its YAML does not say (the rules are then checked after evaluating)."""
    label = spec.label
    if spec.task_yaml is not None:
        cfg = _read((base_dir / spec.task_yaml).resolve())
        keys = _leaf_keys(cfg) if cfg is not None else None
        return None if keys is None else {f"{label}/{n}" for n in result_names(keys)}
    preset = PRESETS[str(spec.preset)]
    names: set[str] = set()
    for leaf, yaml_file in preset.leaves:
        if preset.name == "medical_safety":
            path = shipped_tasks_dir() / "medical_safety" / "_medical_safety_yaml"
        else:
            path = lm_eval_tasks_dir() / preset.folder / yaml_file
        cfg = _read(path)
        keys = _leaf_keys(cfg) if cfg is not None else None
        if keys is None:
            return None
        if preset.subtask_prefix is None:
            names |= {f"{label}/{n}" for n in result_names(keys)}
        else:
            sub = subtask_of(preset, leaf)
            names |= {f"{label}/{sub}/{n}" for n in result_names(keys)}
    if preset.subtask_prefix is not None:
        group = _group_yaml(preset.name)
        cfg = _read(group) if group is not None else None
        keys = _aggregate_keys(cfg) if cfg is not None else None
        if keys is None:
            return None
        names |= {f"{label}/{n}" for n in result_names(keys)}
    return names


def rule_metric_problems(loaded: LoadedRecipe) -> list[Problem]:
    """A problem for each gate rule on a metric its task does not compute. Tasks whose names
    cannot be known up front are judged after evaluating, as before."""
    gates = loaded.recipe.gates
    if gates is None:
        return []
    known = {task.label: task_metric_names(task, loaded.base_dir) for task in gates.tasks}
    out: list[Problem] = []
    for i, rule in enumerate(gates.rules):
        names = known.get(rule.task)
        if names is None or rule.metric in names:
            continue
        shown = ", ".join(sorted(names)[:12]) + (" ..." if len(names) > 12 else "")
        out.append(
            Problem(
                f"gates.rules.{i}: task {rule.task!r} computes no metric {rule.metric!r}"
                f"{did_you_mean(rule.metric, names)}",
                loaded.where(("gates", "rules", i, "metric")),
                f"name one of the task's metrics: {shown}",
            )
        )
    return out


def preset_data_problems(loaded: LoadedRecipe) -> list[Problem]:
    """Presets told to read local data (`data_dir`) find their files: air-gapped releases
    would otherwise learn it when the gate starts, after the merge."""
    from medrelease.core.errors import InputError
    from medrelease.gate.presets import local_data_files

    gates = loaded.recipe.gates
    if gates is None:
        return []
    out: list[Problem] = []
    for i, task in enumerate(gates.tasks):
        data_dir_text = task.data_dir or gates.data_dir
        if task.preset is None or not data_dir_text:
            continue
        preset = PRESETS[task.preset]
        data_dir = (loaded.base_dir / data_dir_text).resolve()
        if preset.name == "medical_safety" and not (data_dir / preset.name).is_dir():
            continue  # its shipped prompts are used
        subtasks = [subtask_of(preset, leaf) for leaf, _ in preset.leaves]
        for sub in subtasks if preset.per_subtask_data else [None]:
            try:
                local_data_files(preset, data_dir, sub)
            except InputError as err:
                loc = ("gates", "tasks", i, "data_dir") if task.data_dir else ("gates", "data_dir")
                out.append(Problem(f"gates.tasks.{i}: {err.message}", loaded.where(loc), err.hint))
                break
    return out
