"""Helpers for the gate tests: a tiny local MCQ task (jsonl + lm-eval YAML), tiny MMLU-format
data, a recipe with a `gates:` block, and a candidate to stand in for `medrelease merge`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# Tiny medical MCQ: enough documents for a bootstrap, few enough for a fast CPU run.
DEMO_MCQ = [
    ("Which organ pumps blood through the body?", ["heart", "liver", "lung", "skin"], 0),
    ("Which vitamin does skin make in sunlight?", ["A", "B12", "C", "D"], 3),
    ("Which organ makes insulin?", ["kidney", "pancreas", "brain", "spleen"], 1),
    ("Normal body temperature in Celsius is about?", ["30", "37", "42", "45"], 1),
    ("Red blood cells mainly carry?", ["oxygen", "bile", "urine", "lymph"], 0),
    ("The longest bone of the body is the?", ["femur", "ulna", "rib", "stapes"], 0),
    ("Which organ filters blood to make urine?", ["heart", "kidney", "colon", "skin"], 1),
    ("Antibiotics act against?", ["viruses", "bacteria", "prions", "allergies"], 1),
    ("How many chambers has the human heart?", ["two", "three", "four", "five"], 2),
    ("Hypertension means high?", ["sugar", "blood pressure", "fever", "weight"], 1),
    ("The trachea carries?", ["food", "air", "blood", "bile"], 1),
    ("Which cells fight infection?", ["white cells", "platelets", "neurons", "red cells"], 0),
]

DEMO_MCQ_YAML = """\
task: demo_mcq
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_demo_task(folder: Path, *, relative: bool = False) -> Path:
    """A local lm-eval MCQ task (jsonl + YAML); returns the YAML path.

    `relative=True` names the jsonl relative to the YAML (how a task beside a recipe is
    written); lm-eval run directly needs the absolute form.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "demo_mcq.jsonl"
    with data.open("w") as fh:
        for q, choices, answer in DEMO_MCQ:
            fh.write(json.dumps({"question": q, "choices": choices, "answer": answer}) + "\n")
    path = folder / "demo_mcq.yaml"
    ref = data.name if relative else str(data.resolve())
    path.write_text(DEMO_MCQ_YAML.format(data=json.dumps(ref)))
    return path


# how the gate tests evaluate gate_inputs' tasks and data: on the CPU, against the base
LOCAL_GATES: dict[str, Any] = {
    "baselines": ["base"],
    "batch_size": 4,
    "device": "cpu",
    "data_dir": "eval-data",
}


def gate_recipe(llama: dict[str, Path], gates: dict[str, Any]) -> dict[str, Any]:
    """The gate tests' recipe: release `tiny-gate`, stages base/sft/dpo, this `gates:`."""
    return {
        "release": {
            "name": "tiny-gate",
            "version": "0.1.0",
            "repo": "medrelease-tests/tiny-gate",
            "license": "apache-2.0",
        },
        "stages": {"base": str(llama["base"]), "sft": str(llama["sft"]), "dpo": str(llama["dpo"])},
        "merge": {
            "merge_method": "linear",
            "models": [
                {"model": "sft", "parameters": {"weight": 0.5}},
                {"model": "dpo", "parameters": {"weight": 0.5}},
            ],
            "dtype": "float32",
        },
        "gates": gates,
    }


def write_gate_recipe(
    root: Path, llama: dict[str, Path], gates: dict[str, Any], name: str = "recipe.yaml"
) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(gate_recipe(llama, gates), sort_keys=False))
    return path


def gate_inputs(root: Path, llama: dict[str, Path]) -> Path:
    """What the gate tests' recipe names beside it (the local task, offline MMLU rows), and a
    candidate clearly different from the base (so deltas are not all zero), to stand in for
    the merge (tests/releases.py): the gate only reads <workdir>/<release>/merged/."""
    from medrelease.testing.tiny import derive_stage

    write_demo_task(root / "tasks")
    write_mmlu_medical_data(root / "eval-data")
    return derive_stage(llama["base"], root / "cand", seed=7, scale=0.5)


MMLU_ROWS = [
    ("Which structure carries air to the lungs?", ["trachea", "esophagus", "aorta", "ureter"], 0),
    ("Which organ stores bile?", ["spleen", "gallbladder", "kidney", "bladder"], 1),
    ("Where is insulin made?", ["liver", "thyroid", "pancreas", "adrenal"], 2),
    ("Which cells carry oxygen?", ["platelets", "neutrophils", "lymphocytes", "erythrocytes"], 3),
]


def write_mmlu_medical_data(data_dir: Path) -> Path:
    """cais/mmlu-format files for the six medical subjects: 3 test + 1 dev question each."""
    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS

    for subject in MMLU_MEDICAL_SUBJECTS:
        folder = data_dir / "mmlu_medical" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in (("test", MMLU_ROWS[:3]), ("dev", MMLU_ROWS[3:])):
            with (folder / f"{split}.jsonl").open("w") as fh:
                for q, choices, answer in rows:
                    row = {"question": f"{q} ({subject})", "subject": subject}
                    fh.write(json.dumps({**row, "choices": choices, "answer": answer}) + "\n")
    return data_dir
