"""Turn a recipe's `gates.tasks` entry into what lm-eval needs: a task name + include paths.

Also computes the task's fingerprint (the lm-eval version, every task YAML and data file the
task reads) so the evaluation cache is invalidated exactly when the task changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from medrelease.core.errors import RecipeError
from medrelease.core.hashing import digest_of, sha256_file
from medrelease.gate.config import GatesConfig, GateTask
from medrelease.gate.presets import (
    PRESETS,
    Preset,
    lm_eval_tasks_dir,
    local_data_files,
    shipped_tasks_dir,
    subtask_of,
    write_override_yaml,
)


@dataclass
class ResolvedTask:
    spec: GateTask
    label: str  # metric prefix
    lm_task: str  # task or group name handed to lm-eval
    include_paths: list[Path]
    preset: Preset | None = None
    fingerprint_files: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def subtask_names(self) -> dict[str, str]:
        """lm-eval leaf task name -> subtask name used in metric names (groups only)."""
        if self.preset is None or self.preset.subtask_prefix is None:
            return {}
        return {leaf: subtask_of(self.preset, leaf) for leaf, _ in self.preset.leaves}

    def fingerprint(self) -> str:
        files = {str(p): sha256_file(p) for p in sorted(set(self.fingerprint_files))}
        return digest_of(
            {
                "lm_eval": metadata.version("lm_eval"),
                "lm_task": self.lm_task,
                "preset": self.preset.name if self.preset else None,
                # paths of generated files change with the workdir; their content matters
                "files": sorted(files.values()),
            }
        )


class _AnyTagLoader(yaml.SafeLoader):
    """Reads lm-eval YAML without resolving `!function` tags (we only need names/paths)."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_task_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read task YAML {path}: {exc}") from None
    if not isinstance(data, dict) or not (data.get("task") or data.get("group")):
        raise RecipeError(
            f"{path} is not an lm-eval task YAML (no `task:` or `group:` key)",
            hint="see lm-eval's docs/new_task_guide.md for the task YAML format",
        )
    return data


def _referenced_data_files(cfg: dict[str, Any], folder: Path) -> list[Path]:
    files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
    values = files.values() if isinstance(files, dict) else [files]
    out: list[Path] = []
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            p = Path(str(item))
            for cand in (p, folder / p):
                if cand.is_file():
                    out.append(cand)
                    break
    return out


def _absolute_data_files(cfg: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """An override config when the task's data_files are relative to its YAML.

    `datasets` resolves relative data_files against the working directory; a task shipped
    beside a recipe means them relative to the YAML, so medrelease makes them absolute.
    """
    kwargs = cfg.get("dataset_kwargs")
    files = (kwargs or {}).get("data_files") if isinstance(kwargs, dict) else None
    if not isinstance(files, dict) or not cfg.get("task"):
        return None
    fixed: dict[str, Any] = {}
    changed = False
    for split, value in files.items():
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            p = Path(str(item))
            if not p.is_absolute() and (path.parent / p).is_file():
                out.append(str((path.parent / p).resolve()))
                changed = True
            else:
                out.append(str(item))
        fixed[split] = out if isinstance(value, list) else out[0]
    if not changed:
        return None
    assert isinstance(kwargs, dict)
    return {
        "include": str(path),
        "task": cfg["task"],
        "dataset_kwargs": {**kwargs, "data_files": fixed},
    }


def _task_folder_files(folder: Path) -> list[Path]:
    """The YAMLs, Python helpers and small data files beside a task YAML."""
    pattern = re.compile(r".*(\.ya?ml|_yaml|\.py|\.jsonl?|\.csv|\.parquet|\.txt)$")
    return [p for p in sorted(folder.iterdir()) if p.is_file() and pattern.match(p.name)]


def resolve_task(
    spec: GateTask, gates: GatesConfig, base_dir: Path, work_dir: Path, *, where: str | None = None
) -> ResolvedTask:
    """Resolve one task; override YAMLs are written to `work_dir/<label>/`."""
    label = spec.label
    settings = {
        "num_fewshot": spec.num_fewshot,
        "limit": spec.limit,
        "apply_chat_template": spec.apply_chat_template,
        "gen_kwargs": spec.gen_kwargs,
        "batch_size": spec.batch_size or gates.batch_size,
    }
    if spec.task_yaml is not None:
        path = (base_dir / spec.task_yaml).resolve()
        if not path.is_file():
            raise RecipeError(
                f"task YAML {spec.task_yaml} not found (looked at {path})",
                where=where,
                hint="task_yaml paths are relative to the recipe file",
            )
        cfg = read_task_yaml(path)
        files = _task_folder_files(path.parent) + _referenced_data_files(cfg, path.parent)
        include: list[Path] = [path.parent]
        override = _absolute_data_files(cfg, path)
        if override is not None:
            gen = work_dir / label
            gen.mkdir(parents=True, exist_ok=True)
            name = str(cfg.get("task"))
            (gen / f"{name}.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
            include.append(gen)  # later include paths override earlier ones
        return ResolvedTask(
            spec=spec,
            label=label,
            lm_task=str(cfg.get("task") or cfg.get("group")),
            include_paths=include,
            fingerprint_files=files,
            settings=settings,
        )

    assert spec.preset is not None
    preset = PRESETS[spec.preset]
    data_dir_text = spec.data_dir or gates.data_dir
    data_dir = (base_dir / data_dir_text).resolve() if data_dir_text else None
    gen = work_dir / label
    gen.mkdir(parents=True, exist_ok=True)
    for old in gen.glob("*.yaml"):
        old.unlink()
    include = []
    fp: list[Path] = []
    if preset.folder:
        include.append(lm_eval_tasks_dir() / preset.folder)
    if preset.name == "mmlu_medical":
        group = shipped_tasks_dir() / "presets" / "mmlu_medical.yaml"
        (gen / "mmlu_medical.yaml").write_text(group.read_text(encoding="utf-8"))
    if preset.name == "medical_safety":
        fp += _task_folder_files(shipped_tasks_dir() / "medical_safety")
    for leaf, yaml_file in preset.leaves:
        data_files: dict[str, Path] | None = None
        if data_dir is not None and (
            preset.name != "medical_safety" or (data_dir / preset.name).is_dir()
        ):
            sub = subtask_of(preset, leaf) if preset.per_subtask_data else None
            data_files = local_data_files(preset, data_dir, sub)
            fp += list(data_files.values())
        if data_files is not None or preset.name == "medical_safety":
            write_override_yaml(gen, preset, leaf, yaml_file, data_files)
    fp += sorted(gen.glob("*.yaml"))
    include.append(gen)  # last: lm-eval lets later include paths override earlier ones
    return ResolvedTask(
        spec=spec,
        label=label,
        lm_task=preset.lm_task,
        include_paths=include,
        preset=preset,
        fingerprint_files=fp,
        settings=settings,
    )


def resolve_all(
    gates: GatesConfig, base_dir: Path, work_dir: Path, where: Any = None
) -> list[ResolvedTask]:
    out = []
    for i, spec in enumerate(gates.tasks):
        loc = where(("gates", "tasks", i)) if where else None
        out.append(resolve_task(spec, gates, base_dir, work_dir, where=loc))
    return out
