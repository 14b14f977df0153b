"""A gate task's documents: its lm-eval leaf tasks, their local data files by split, the
records in a file, and the seeded hold-out (`sweep.search.<task>.holdout`) that splits a task's
documents between the sweep's search and the gate.

The hold-out is drawn here, in the gate, because both sides must draw the same documents: the
sweep (a layer above) searches `holdout_documents(...)[0]`, the gate evaluates `[1]`, the rest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.gate.config import GatesConfig, GateTask
from medrelease.gate.presets import DATA_SUFFIXES, PRESETS, local_data_files, subtask_of


@dataclass
class LeafData:
    """One lm-eval leaf task of a gate task: its local data files by split (empty: the data
    is not local, e.g. loaded from the Hub) and the split lm-eval evaluates."""

    leaf: str
    evaluated: str | None
    files: dict[str, Path] = field(default_factory=dict)
    splits: tuple[str, ...] | None = None  # the splits the task's dataset is known to have


def read_records(path: Path) -> list[tuple[int, str]]:
    """(line or row number, canonical JSON text) of every document in a data file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return [(n, json.dumps(r, sort_keys=True, default=str)) for n, r in enumerate(rows, 1)]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
        return [(n, json.dumps(r, sort_keys=True)) for n, r in enumerate(rows, 1)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append((n, json.dumps(json.loads(line), sort_keys=True)))
    return out


def count_docs(path: Path) -> int:
    return len(read_records(path))


def leaf_data(task: GateTask, gates: GatesConfig, base_dir: Path) -> list[LeafData]:
    """The gate task's lm-eval leaf tasks, with their local files and evaluated split."""
    if task.preset is not None:
        preset = PRESETS[task.preset]
        data_text = task.data_dir or gates.data_dir
        data_dir = (base_dir / data_text).resolve() if data_text else None
        out = []
        for leaf, _ in preset.leaves:
            files: dict[str, Path] = {}
            if data_dir is not None and (data_dir / preset.name).is_dir():
                sub = subtask_of(preset, leaf) if preset.per_subtask_data else None
                files = local_data_files(preset, data_dir, sub)
            out.append(LeafData(leaf, preset.splits[0], files, preset.splits))
        return out
    from medrelease.gate.tasks import read_task_yaml

    assert task.task_yaml is not None
    path = (base_dir / task.task_yaml).resolve()
    cfg = read_task_yaml(path)
    leaf = str(cfg.get("task") or cfg.get("group"))
    evaluated = cfg.get("test_split") or cfg.get("validation_split")
    raw = (cfg.get("dataset_kwargs") or {}).get("data_files")
    local: dict[str, Path] = {}
    if isinstance(raw, dict):
        for split, value in raw.items():
            p = Path(str(value[0] if isinstance(value, list) else value))
            p = p if p.is_absolute() else path.parent / p
            if p.is_file() and p.suffix in DATA_SUFFIXES:
                local[str(split)] = p
    splits = tuple(local) if local else None
    return [LeafData(leaf, str(evaluated) if evaluated else None, local, splits)]


def holdout_documents(leaf: str, n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(the search's, the gate's) document indices of one leaf task with `n` documents: a
    seeded shuffle (a string seed: the same draw on every machine and Python run), the first
    `fraction` of it (at least one, never all) to the search."""
    order = list(range(n))
    random.Random(f"medrelease-holdout:{seed}:{leaf}").shuffle(order)
    k = min(n - 1, max(1, round(fraction * n)))
    return sorted(order[:k]), sorted(order[k:])


def holdouts_of(recipe: Any) -> dict[str, tuple[float, int]]:
    """Gate task label -> (fraction, seed) of the recipe's `sweep.search.<task>.holdout`."""
    sweep = getattr(recipe, "sweep", None)
    out = {}
    for label, items in (sweep.search if sweep is not None else {}).items():
        if items.holdout is not None:
            out[label] = (items.holdout.fraction, items.holdout.seed)
    return out


def held_out_samples(
    task: GateTask, gates: GatesConfig, base_dir: Path, fraction: float, seed: int
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(search, gate) documents of every leaf task of `task` (its data must be local files:
    the draw needs each leaf's document count)."""
    search: dict[str, list[int]] = {}
    gate: dict[str, list[int]] = {}
    for d in leaf_data(task, gates, base_dir):
        file = d.files.get(d.evaluated or "")
        if file is None:
            raise RecipeError(
                f"task {task.label!r} ({d.leaf}): a hold-out needs the evaluated split "
                f"({d.evaluated!r}) as a local file, to count its documents",
                hint="put the dataset under gates.data_dir (or in the task YAML's data_files), "
                "or search a range or another split instead",
            )
        search[d.leaf], gate[d.leaf] = holdout_documents(d.leaf, count_docs(file), fraction, seed)
    return search, gate


def apply_holdouts(
    tasks: list[Any], holdouts: Mapping[str, tuple[float, int]], gates: GatesConfig, base_dir: Path
) -> list[Any]:
    """The gate's tasks with a hold-out evaluating only the documents the search did not get
    (lm-eval's `samples`, in the task's settings: part of every cache key and record)."""
    out = []
    for task in tasks:
        if task.label in holdouts:
            fraction, seed = holdouts[task.label]
            _, gate = held_out_samples(task.spec, gates, base_dir, fraction, seed)
            task = replace(task, settings={**task.settings, "limit": None, "samples": gate})
        out.append(task)
    return out
