"""Every preset resolves to lm-eval's own task configs, reading local files under data_dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medrelease.core.errors import InputError
from medrelease.gate.config import GatesConfig
from medrelease.gate.presets import PRESETS
from medrelease.gate.runner import task_manager_for
from medrelease.gate.tasks import resolve_task

# one row in each dataset's own schema (as on the Hub)
ROWS: dict[str, dict[str, Any]] = {
    "medmcqa": {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2},
    "medqa": {
        "sent1": "Q?",
        "ending0": "a",
        "ending1": "b",
        "ending2": "c",
        "ending3": "d",
        "label": 1,
    },
    "pubmedqa": {"QUESTION": "Q?", "CONTEXTS": ["ctx one", "ctx two"], "final_decision": "yes"},
    "mmlu_pro": {
        "question": "Q?",
        "options": ["a", "b", "c", "d"],
        "answer": "B",
        "answer_index": 1,
        "cot_content": "A: Let's think. The answer is (B).",
        "category": "health",
        "src": "test",
    },
}


def _write(folder: Path, splits: tuple[str, ...], row: dict[str, Any], n: int = 2) -> None:
    from medrelease.gate.presets import MMLU_PRO_SUBJECTS

    folder.mkdir(parents=True, exist_ok=True)
    # MMLU-Pro keeps all subjects in one file; each subtask filters on `category`
    categories = [c.replace("_", " ") for c in MMLU_PRO_SUBJECTS] if "category" in row else [None]
    for split in splits:
        with (folder / f"{split}.jsonl").open("w") as fh:
            for cat in categories:
                extra = {"category": cat} if cat else {}
                for i in range(n):
                    fh.write(json.dumps({**row, **extra, "question_id": i}) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["medmcqa", "medqa", "pubmedqa", "mmlu_pro"])
def test_preset_reads_local_data(
    preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    p = PRESETS[preset]
    _write(tmp_path / "data" / preset, p.splits, ROWS[preset])
    gates = GatesConfig.model_validate({"data_dir": "data", "tasks": [preset]})
    task = resolve_task(gates.tasks[0], gates, tmp_path, tmp_path / "gen")
    assert task.lm_task == p.lm_task
    loaded = task_manager_for(task).load_task_or_group([task.lm_task])
    leaves: dict[str, Any] = {}

    def walk(d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            else:
                leaves[getattr(k, "group_name", k) if not isinstance(k, str) else k] = v

    walk(loaded)
    assert set(leaves) == {leaf for leaf, _ in p.leaves}
    for name, t in leaves.items():
        docs = list(t.eval_docs)
        assert len(docs) == 2, name  # mmlu_pro: only its own subject's rows
        if docs:
            assert "Q?" in t.doc_to_text(docs[0])
            assert t.config.dataset_path == "json"


def test_missing_local_data_names_the_files(tmp_path: Path) -> None:
    gates = GatesConfig.model_validate({"data_dir": "data", "tasks": ["medqa"]})
    with pytest.raises(InputError, match="no local data for preset 'medqa'") as err:
        resolve_task(gates.tasks[0], gates, tmp_path, tmp_path / "gen")
    assert "test.jsonl" in str(err.value.hint)


def test_fingerprint_follows_the_data(tmp_path: Path) -> None:
    _write(tmp_path / "data" / "medmcqa", ("validation",), ROWS["medmcqa"])
    gates = GatesConfig.model_validate({"data_dir": "data", "tasks": ["medmcqa"]})
    first = resolve_task(gates.tasks[0], gates, tmp_path, tmp_path / "gen").fingerprint()
    same = resolve_task(gates.tasks[0], gates, tmp_path, tmp_path / "gen").fingerprint()
    _write(tmp_path / "data" / "medmcqa", ("validation",), ROWS["medmcqa"], n=3)
    changed = resolve_task(gates.tasks[0], gates, tmp_path, tmp_path / "gen").fingerprint()
    assert first == same != changed
