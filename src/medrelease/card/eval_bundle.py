"""The `eval/` folder published with the model: the task files the gates ran, runnable anywhere.

The gate runs lm-eval with task folders on this machine (the recipe's task YAMLs, medrelease's
own tasks, generated overrides under `.cache/`). A reader has none of them, so the card step
copies what a task needs into `eval/` of the model repo, and the card's commands say
`lm_eval --include_path eval/ ...` from the root of a clone:

* a custom task (`task_yaml:`): its folder (YAMLs, Python helpers and, unless
  `card.eval_data: false` or a file is over the size limit, its data files); `data_files` that
  pointed at this machine are rewritten relative to the clone root;
* `mmlu_medical`: the group definition (its subjects are lm-eval's own tasks);
* `medical_safety`: the task, its helpers and its prompts;
* lm-eval's own presets (`ifeval`, `mmlu_pro`, ...): nothing; lm-eval ships them and reads the
  dataset from the Hub. When the gate read a local copy (`gates.data_dir`), the card says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medrelease.card.datasets import TaskData
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import GateReport, TaskInfo

EVAL_DIR = "eval"
# what the gate also counts as part of a custom task's folder (gate/tasks.py)
TASK_FILE_RE = re.compile(r".*(\.ya?ml|_yaml|\.py|\.jsonl?|\.csv|\.parquet|\.txt)$")
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")
MAX_DATA_FILE = 10 * 1024 * 1024  # larger data files are named, not shipped


@dataclass
class BundleTask:
    label: str
    lm_task: str  # what `--tasks` names
    include: bool  # needs `--include_path eval/`
    notes: list[str] = field(default_factory=list)


@dataclass
class EvalBundle:
    files: dict[str, bytes] = field(default_factory=dict)  # path under eval/ -> content
    tasks: dict[str, BundleTask] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # for the publisher, not the card

    @property
    def notes(self) -> list[str]:
        return [n for t in self.tasks.values() for n in t.notes]


class _Tagged(str):
    """A `!function x.y` scalar kept as written, so a rewritten YAML still works in lm-eval."""

    tag = "!function"


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    value = _Tagged(loader.construct_scalar(node))  # type: ignore[arg-type]
    value.tag = "!" + suffix
    return value


_Loader.add_multi_constructor("!", _tagged)
_Dumper.add_representer(_Tagged, lambda d, v: d.represent_scalar(v.tag, str(v)))


def _is_data(path: Path) -> bool:
    return path.suffix in DATA_SUFFIXES and not path.name.endswith("_yaml")


def _folder_name(loaded: LoadedRecipe, folder: Path, label: str) -> str:
    """The recipe-relative folder of a custom task (`tasks`), or its name when outside."""
    try:
        rel = folder.resolve().relative_to(loaded.base_dir.resolve()).as_posix()
    except ValueError:
        rel = folder.name
    return label if rel in ("", ".") else rel


def _rewrite_data_files(
    text: str, src: Path, sub: str, shipped: set[str], bundle: EvalBundle, ship_data: bool
) -> tuple[str, list[str]]:
    """Point `dataset_kwargs.data_files` at eval/<sub>/ (relative to the clone's root)."""
    cfg = yaml.load(text, Loader=_Loader)  # SafeLoader; tags kept as text
    files = ((cfg or {}).get("dataset_kwargs") or {}).get("data_files") if cfg else None
    if not files:
        return text, []
    notes: list[str] = []

    def fix(item: Any) -> Any:
        p = Path(str(item))
        local = p if p.is_absolute() else src.parent / p
        if not local.is_file():
            return item  # a remote URL or a Hub path: left as written
        name = local.name
        if name not in shipped:
            size = local.stat().st_size
            if ship_data and size <= MAX_DATA_FILE:
                bundle.files[f"{sub}/{name}"] = local.read_bytes()
                shipped.add(name)
            else:
                why = "card.eval_data is false" if not ship_data else f"{size} bytes"
                notes.append(f"`{EVAL_DIR}/{sub}/{name}` is not shipped ({why}): put it there")
        return f"{EVAL_DIR}/{sub}/{name}"

    if isinstance(files, dict):
        new: Any = {
            k: [fix(i) for i in v] if isinstance(v, list) else fix(v) for k, v in files.items()
        }
    else:
        new = [fix(i) for i in files] if isinstance(files, list) else fix(files)
    cfg["dataset_kwargs"]["data_files"] = new
    header = f"# {src.name} as the gates ran it; data_files are relative to the clone root\n"
    return header + yaml.dump(cfg, Dumper=_Dumper, sort_keys=False), notes


def _custom_task(
    loaded: LoadedRecipe, bundle: EvalBundle, label: str, task_yaml: str, ship_data: bool
) -> BundleTask:
    src = (loaded.base_dir / task_yaml).resolve()
    cfg = yaml.load(src.read_text(encoding="utf-8"), Loader=_Loader) or {}
    lm_task = str(cfg.get("task") or cfg.get("group") or label)
    sub = _folder_name(loaded, src.parent, label)
    task = BundleTask(label, lm_task, include=True)
    if any(k.startswith(f"{sub}/") for k in bundle.files):
        return task  # a sibling task already shipped this folder
    shipped: set[str] = set()
    for p in sorted(src.parent.iterdir()):
        if not p.is_file() or not TASK_FILE_RE.match(p.name) or not _is_data(p):
            continue
        if ship_data and p.stat().st_size <= MAX_DATA_FILE:
            bundle.files[f"{sub}/{p.name}"] = p.read_bytes()
            shipped.add(p.name)
        else:
            why = "card.eval_data is false" if not ship_data else f"{p.stat().st_size} bytes"
            task.notes.append(f"`{EVAL_DIR}/{sub}/{p.name}` is not shipped ({why}): put it there")
    for p in sorted(src.parent.iterdir()):
        if not p.is_file() or not TASK_FILE_RE.match(p.name) or _is_data(p):
            continue
        data = p.read_bytes()
        if p.suffix in (".yaml", ".yml") or p.name.endswith("_yaml"):
            text, notes = _rewrite_data_files(
                data.decode("utf-8"), p, sub, shipped, bundle, ship_data
            )
            data = text.encode("utf-8")
            task.notes += notes
        bundle.files[f"{sub}/{p.name}"] = data
    return task


def _medical_safety(bundle: EvalBundle, label: str, data: TaskData) -> BundleTask:
    from medrelease.gate.presets import shipped_tasks_dir

    src = shipped_tasks_dir() / "medical_safety"
    for name in ("_medical_safety_yaml", "utils.py", "prompts.jsonl"):
        bundle.files[f"medical_safety/{name}"] = (src / name).read_bytes()
    bundle.files["medical_safety/medical_safety.yaml"] = (
        "# medrelease's medical safety task; data_files are relative to the clone root\n"
        "include: _medical_safety_yaml\n"
        "task: medical_safety\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {EVAL_DIR}/medical_safety/prompts.jsonl\n"
    ).encode()
    task = BundleTask(label, "medical_safety", include=True)
    if data.local_copy:
        task.notes.append(
            f"`{label}`: the gate read the prompts in gates.data_dir, which are not shipped; "
            "the command runs the prompts shipped in eval/medical_safety/"
        )
    return task


def _preset_task(bundle: EvalBundle, label: str, info: TaskInfo, data: TaskData) -> BundleTask:
    preset = str(info.get("preset"))
    if preset == "medical_safety":
        return _medical_safety(bundle, label, data)
    lm_task = str(info.get("lm_eval_task") or preset)
    include = False
    if preset == "mmlu_medical":
        from medrelease.gate.presets import shipped_tasks_dir

        group = shipped_tasks_dir() / "presets" / "mmlu_medical.yaml"
        bundle.files["mmlu_medical/mmlu_medical.yaml"] = group.read_bytes()
        include = True
    task = BundleTask(label, lm_task, include=include)
    if data.local_copy:
        where = f"`{data.hub_id}`" if data.hub_id else "the dataset"
        task.notes.append(
            f"`{label}`: the gate read a local copy of {where} (gates.data_dir), not shipped; "
            "the command reads it from the Hub"
        )
    return task


def build_bundle(
    loaded: LoadedRecipe,
    report: GateReport,
    datasets: dict[str, TaskData],
    *,
    ship_data: bool = True,
) -> EvalBundle:
    bundle = EvalBundle()
    for label, info in report["tasks"].items():
        data = datasets.get(label) or TaskData(label, None, None)
        if info.get("preset"):
            bundle.tasks[label] = _preset_task(bundle, label, info, data)
        elif info.get("task_yaml") and (loaded.base_dir / str(info["task_yaml"])).is_file():
            bundle.tasks[label] = _custom_task(
                loaded, bundle, label, str(info["task_yaml"]), ship_data
            )
        else:
            lm_task = str(info.get("lm_eval_task") or label)
            bundle.tasks[label] = BundleTask(
                label, lm_task, include=False, notes=[f"`{label}`: task files not found"]
            )
    bundle.warnings += _local_paths(loaded, bundle)
    return bundle


def _local_paths(loaded: LoadedRecipe, bundle: EvalBundle) -> list[str]:
    """A shipped file that names a folder of this machine (an absolute `include:`, say)."""
    import sys

    prefixes = {str(loaded.base_dir.resolve()), sys.prefix, str(Path.home())}
    out = []
    for rel, data in sorted(bundle.files.items()):
        text = data.decode("utf-8", errors="replace")
        for prefix in sorted(p for p in prefixes if len(p) > 1):
            if prefix in text:
                out.append(
                    f"{EVAL_DIR}/{rel} names {prefix}, a folder of this machine: the published "
                    "task will not run elsewhere (use paths relative to the task YAML)"
                )
                break
    return out
