"""Presets: the recipe's task names mapped onto lm-eval's own task configurations.

A preset names lm-eval task(s) shipped with lm-eval (or with medrelease), the splits its
dataset has, and where local copies of those splits live under `data_dir`:

    <data_dir>/<preset>/<split>.jsonl              (one dataset for every subtask)
    <data_dir>/<preset>/<subtask>/<split>.jsonl    (mmlu_medical: one folder per subject)

(`.json` and `.parquet` work too.) With local data, medrelease writes a small override YAML
per lm-eval task that `include:`s lm-eval's own YAML and only swaps the dataset for the local
files, so prompts, metrics and versions stay lm-eval's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medrelease.core.data import packaged
from medrelease.core.errors import InputError

MMLU_MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
MMLU_PRO_SUBJECTS = (
    "biology", "business", "chemistry", "computer_science", "economics", "engineering",
    "health", "history", "law", "math", "other", "philosophy", "physics", "psychology",
)  # fmt: skip
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class Preset:
    name: str
    lm_task: str  # the task or group name handed to lm-eval
    folder: str  # lm-eval's tasks/<folder> holding the YAMLs ("" for medrelease's own)
    leaves: tuple[tuple[str, str], ...]  # (lm-eval task name, YAML file name)
    splits: tuple[str, ...]  # dataset splits the task reads
    subtask_prefix: str | None = None  # group presets: leaf name minus prefix = subtask
    per_subtask_data: bool = False


def _leaves(prefix: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{n}", f"{prefix}{n}.yaml") for n in names)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("ifeval", "ifeval", "ifeval", (("ifeval", "ifeval.yaml"),), ("train",)),
        Preset(
            "mmlu_medical",
            "mmlu_medical",
            "mmlu/default",
            _leaves("mmlu_", MMLU_MEDICAL_SUBJECTS),
            ("test", "dev", "validation"),
            subtask_prefix="mmlu_",
            per_subtask_data=True,
        ),
        Preset(
            "mmlu_pro",
            "mmlu_pro",
            "mmlu_pro",
            _leaves("mmlu_pro_", MMLU_PRO_SUBJECTS),
            ("test", "validation"),
            subtask_prefix="mmlu_pro_",
        ),
        Preset(
            "medmcqa", "medmcqa", "medmcqa", (("medmcqa", "medmcqa.yaml"),), ("validation", "train")
        ),
        Preset(
            "medqa",
            "medqa_4options",
            "medqa",
            (("medqa_4options", "medqa.yaml"),),
            ("test", "validation", "train"),
        ),
        Preset(
            "pubmedqa",
            "pubmedqa",
            "pubmedqa",
            (("pubmedqa", "pubmedqa.yaml"),),
            ("test", "validation", "train"),
        ),
        Preset("medical_safety", "medical_safety", "", (("medical_safety", ""),), ("test",)),
    )
}


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def shipped_tasks_dir() -> Path:
    """medrelease's own task files (safety task, MCQ utilities, preset groups)."""
    return packaged("tasks")


def _data_file(folder: Path, split: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        p = folder / f"{split}{suffix}"
        if p.is_file():
            return p
    return None


def local_data_files(preset: Preset, data_dir: Path, subtask: str | None) -> dict[str, Path]:
    """{split: file} found for one leaf; raises when data_dir has nothing for the preset."""
    folder = data_dir / preset.name
    if preset.per_subtask_data and subtask is not None:
        folder = folder / subtask
    files = {s: f for s in preset.splits if (f := _data_file(folder, s)) is not None}
    if not files and len(preset.splits) == 1 and folder.is_dir():
        # a single-split dataset may keep its original file name (IFEval: input_data.jsonl)
        found = sorted(p for p in folder.iterdir() if p.suffix in DATA_SUFFIXES)
        if len(found) == 1:
            files = {preset.splits[0]: found[0]}
    if not files:
        wanted = ", ".join(f"{s}.jsonl" for s in preset.splits)
        raise InputError(
            f"no local data for preset {preset.name!r} in {folder}",
            hint=f"put the dataset there as {wanted} (the first is the evaluated split), "
            "or remove data_dir to load it from the Hub",
        )
    return files


def _yaml_str(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a valid YAML scalar


def write_override_yaml(
    out_dir: Path, preset: Preset, leaf: str, yaml_file: str, files: dict[str, Path] | None
) -> Path:
    """A task YAML that includes lm-eval's YAML for `leaf` and swaps in local data files."""
    if preset.name == "medical_safety":
        base = shipped_tasks_dir() / "medical_safety"
        include = base / "_medical_safety_yaml"
        files = files or {"test": base / "prompts.jsonl"}
    else:
        include = lm_eval_tasks_dir() / preset.folder / yaml_file
    lines = [f"include: {_yaml_str(str(include))}", f"task: {_yaml_str(leaf)}"]
    if files:
        kinds = {DATA_SUFFIXES[f.suffix] for f in files.values()}
        if len(kinds) > 1:
            raise InputError(f"preset {preset.name!r}: mix of JSON and parquet data files")
        lines += [
            f"dataset_path: {kinds.pop()}",
            "dataset_name: null",
            "dataset_kwargs:",
            "  data_files:",
            *(f"    {split}: {_yaml_str(str(f.resolve()))}" for split, f in files.items()),
        ]
    path = out_dir / f"{leaf}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def subtask_of(preset: Preset, leaf: str) -> str:
    return leaf.removeprefix(preset.subtask_prefix or "")
