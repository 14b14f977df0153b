"""The demo's evaluation items: generated, committed, held out where they must be."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from medrelease.demo import facts
from medrelease.demo.paths import HELDOUT_TEXT, RECIPE_TEMPLATE, TASK_NAMES, TASKS_DIR
from medrelease.demo.taskdata import heldout_text, task_files


def _demo_tasks_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_tasks", TASKS_DIR / "demo_tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_task_data_equals_generator():
    for name, text in task_files().items():
        assert (TASKS_DIR / name).read_text() == text, (
            f"regenerate {name}: python -m medrelease.demo.taskdata"
        )


def test_committed_heldout_text_equals_generator():
    assert HELDOUT_TEXT.read_text() == heldout_text()


def test_mcq_items_are_well_formed():
    items = facts.mcq_items()
    assert len(items) == len(facts.FACTS) == 48
    for item, fact in zip(items, facts.FACTS, strict=True):
        choices = item["choices"]
        assert isinstance(choices, list) and len(set(choices)) == 4
        assert choices[item["label"]] == fact.answer  # type: ignore[index]


def test_format_items_are_held_out_from_all_training():
    trained_prompts = {e.prompt for e in facts.sft_examples() + facts.grpo_examples()}
    items = facts.format_items()
    assert len(items) >= 20
    assert not {str(i["prompt"]) for i in items} & trained_prompts
    assert not set(facts.FORMAT_EVAL_FACTS) & set(facts.FORMAT_TRAIN_FACTS)
    # SFT is taught the rule (on other questions); GRPO never sees the instruction
    assert any(facts.FORMAT_RULE in e.prompt for e in facts.sft_examples())
    assert not any(facts.FORMAT_RULE in e.prompt for e in facts.grpo_examples())


@pytest.mark.parametrize(
    ("reply", "follows"),
    [
        (" [liver]", 1.0),
        ("[night blindness]", 1.0),
        (" liver", 0.0),
        ("[liver", 0.0),
        ("[liver] because", 0.0),
        ("[]", 0.0),
        ("[[liver]]", 0.0),
    ],
)
def test_format_metric(reply: str, follows: float):
    module = _demo_tasks_module()
    assert module.process_format({"answer": "liver"}, [reply]) == {"format_acc": follows}


def test_lm_eval_loads_the_tasks_offline():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    loaded = manager.load(list(TASK_NAMES))["tasks"]
    sizes = {name: len(task.eval_docs) for name, task in loaded.items()}
    assert sizes == {"demo_mcq": 48, "demo_format": len(facts.format_items())}
    mcq = loaded["demo_mcq"]
    doc = mcq.eval_docs[0]
    assert mcq.doc_to_text(doc) == facts.qa_prompt(facts.FACTS[0])
    assert mcq.doc_to_choice(doc)[mcq.doc_to_target(doc)] == facts.FACTS[0].answer


def test_recipe_template_is_consistent(tmp_path: Path):
    from medrelease.pipeline.recipes import load_recipe

    data = yaml.safe_load(RECIPE_TEMPLATE.read_text())
    stages = set(data["stages"])
    assert stages == {"base", "sft", "grpo"}
    assert {m["model"] for m in data["merge"]["models"]} <= stages
    gates = data["gates"]
    assert set(gates["baselines"]) <= stages
    names = set()
    for task in gates["tasks"]:
        path = RECIPE_TEMPLATE.parent / task["task_yaml"]
        assert path.is_file()
        assert yaml.load(path.read_text(), Loader=_IgnoreTags)["task"] == task["name"]
        names.add(task["name"])
    assert names == set(TASK_NAMES)
    assert {r["metric"].split("/")[0] for r in gates["rules"]} == names
    assert data["quantize"]["gguf"]["types"] == ["Q8_0", "Q4_K_M"]
    assert (RECIPE_TEMPLATE.parent / data["quantize"]["checks"]["heldout"]) == HELDOUT_TEXT
    # the full recipe validates against the project's schema with stage overrides
    for name in stages:
        (tmp_path / name).mkdir()
    loaded = load_recipe(
        RECIPE_TEMPLATE, overrides={n: str(tmp_path / n) for n in stages}, check_merge=False
    )
    assert loaded.recipe.gates is not None and len(loaded.recipe.gates.rules) == 4


class _IgnoreTags(yaml.SafeLoader):
    pass


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)
