"""Which dataset each gated task read: the Hub id, configs and split, from the task YAMLs.

The Hub's `model-index` wants a dataset *id* (`cais/mmlu`, `google/IFEval`) and the split the
numbers come from. Both are in the task definitions the gate ran: lm-eval's own YAMLs for the
presets (`dataset_path`, `dataset_name`, `test_split`), the recipe's YAML for custom tasks.
They are read with lm-eval's own YAML loader (includes resolved, `!function` left unresolved),
so a new lm-eval version that moves a dataset moves the card with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import GateReport

HUB_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class TaskData:
    """Where the numbers of one gated task come from."""

    label: str
    hub_id: str | None  # Hub dataset id, None for data that lives only in the task's files
    split: str | None
    configs: dict[str, str | None] = field(default_factory=dict)  # subtask -> dataset config
    config: str | None = None  # the config of a single-task dataset
    local_copy: bool = False  # the gate read local files (gates.data_dir), not the Hub dataset


def eval_split(cfg: dict[str, Any]) -> str | None:
    """The split lm-eval scores: test_split, else validation_split (lm-eval's order)."""
    for key in ("test_split", "validation_split"):
        if cfg.get(key):
            return str(cfg[key])
    return None


def _hub_id(cfg: dict[str, Any]) -> str | None:
    path = cfg.get("dataset_path")
    if isinstance(path, str) and HUB_DATASET_RE.match(path) and not Path(path).exists():
        return path
    return None  # a builder (json, csv, parquet), a local folder, or a custom_dataset loader


def _load(path: Path) -> dict[str, Any] | None:
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        return load_yaml(path, resolve_func=False)
    except (OSError, ValueError, yaml.YAMLError):
        return None  # a broken task YAML failed the gate already; the card shows no id


def _gate_tasks(loaded: LoadedRecipe) -> dict[str, Any]:
    gates = loaded.recipe.gates
    return {t.label: t for t in (gates.tasks if gates else [])}


def _uses_local_data(loaded: LoadedRecipe, spec: Any, preset: str) -> bool:
    gates = loaded.recipe.gates
    data_dir = spec.data_dir or (gates.data_dir if gates else None)
    if not data_dir:
        return False
    if preset == "medical_safety":  # its own prompts unless data_dir has a folder for it
        return (loaded.base_dir / data_dir / preset).is_dir()
    return True


def _preset_data(label: str, preset_name: str, local: bool) -> TaskData:
    from medrelease.gate.presets import PRESETS, lm_eval_tasks_dir, subtask_of

    preset = PRESETS.get(preset_name)
    if preset is None or not preset.folder:  # medrelease's own task: data ships in eval/
        return TaskData(label, None, "test", local_copy=local)
    folder = lm_eval_tasks_dir() / preset.folder
    data = TaskData(label, None, None, local_copy=local)
    for leaf, yaml_file in preset.leaves:
        cfg = _load(folder / yaml_file) or {}
        data.hub_id = data.hub_id or _hub_id(cfg)
        data.split = data.split or eval_split(cfg)
        name = cfg.get("dataset_name")
        if preset.subtask_prefix is not None:
            data.configs[subtask_of(preset, leaf)] = str(name) if name else None
        else:
            data.config = str(name) if name else None
    return data


def _custom_data(loaded: LoadedRecipe, label: str, task_yaml: str) -> TaskData:
    cfg = _load(loaded.base_dir / task_yaml) or {}
    name = cfg.get("dataset_name")
    return TaskData(
        label,
        _hub_id(cfg),
        eval_split(cfg),
        config=str(name) if name and _hub_id(cfg) else None,
    )


def task_datasets(loaded: LoadedRecipe, report: GateReport) -> dict[str, TaskData]:
    """label -> TaskData for every task in the gate report."""
    specs = _gate_tasks(loaded)
    out: dict[str, TaskData] = {}
    for label, info in report["tasks"].items():
        spec = specs.get(label)
        preset = info.get("preset") or (spec.preset if spec else None)
        task_yaml = info.get("task_yaml") or (spec.task_yaml if spec else None)
        if preset:
            local = spec is not None and _uses_local_data(loaded, spec, preset)
            out[label] = _preset_data(label, preset, local)
        elif task_yaml:
            out[label] = _custom_data(loaded, label, task_yaml)
        else:
            out[label] = TaskData(label, None, None)
    return out
