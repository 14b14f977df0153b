"""A published card works anywhere: its commands, task files and metadata carry nothing local.

Checked with the real tools: lm-eval loads the `eval/` folder the card ships (from a "clone"
that is not the machine's task folders), huggingface_hub parses `model-index` and
`.eval_results/`, and the dataset ids are the ones lm-eval's own task YAMLs name.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from card.card_fixture import RELEASE, REPORT, load, release_for_cards
from medrelease.card.step import CARD_FILES, card_release
from medrelease.core.console import Reporter

LOCAL_MARKERS = ("site-packages", ".cache", "/tmp", "/work", "/root", "/home")


def run_card(recipe: Path, workdir: Path) -> tuple[Any, Path]:
    result = card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    return result, workdir / RELEASE / "card"


def published_text(card_dir: Path) -> str:
    """Everything the card step writes for publishing, as one text."""
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(card_dir.rglob("*"))
        if p.is_file() and p.suffix != ".png"
    )


def lm_eval_yaml(rel: str) -> dict[str, Any]:
    """A task YAML of the installed lm-eval, read by lm-eval's own loader."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.tasks.__file__).parent / rel, resolve_func=False)


def local_report(tmp_path: Path) -> dict[str, Any]:
    """REPORT as a gate on this machine writes it: local folders in sources and commands."""
    import medrelease

    pkg = Path(medrelease.__file__).resolve().parent
    report = copy.deepcopy(REPORT)
    report["models"]["grpo"]["source"] = str(tmp_path / "grpo")
    report["reproduce"] = [
        f"lm_eval --model hf --model_args pretrained={tmp_path}/build/{RELEASE}/merged "
        f"--tasks medical_safety --include_path {pkg}/data/tasks/medical_safety "
        f"--include_path {tmp_path}/build/{RELEASE}/.cache/gates/tasks/medical_safety",
    ]
    return report


def test_published_files_carry_no_local_paths(tmp_path):
    recipe, workdir = release_for_cards(tmp_path, report=local_report(tmp_path))
    _, card_dir = run_card(recipe, workdir)
    text = published_text(card_dir)
    assert str(tmp_path) not in text
    for marker in LOCAL_MARKERS:
        assert marker not in text, marker
    readme = (card_dir / "README.md").read_text()
    # the candidate is the published repo at the release tag, a Hub stage at its commit
    assert "pretrained=medrelease-tests/tiny-med,revision=v1.0.0" in readme
    assert f"pretrained=medrelease-tests/tiny-base,revision={'0123456789abcdef' * 2}" in readme
    # a local stage is named as local-only, never a folder of this machine
    assert "pretrained=<grpo>" in readme
    assert "`<grpo>` stands for a local-only stage" in readme
    assert "--include_path eval/ " in readme


def test_stage_repos_replace_local_only_placeholders(tmp_path):
    recipe, workdir = release_for_cards(tmp_path, card={"stage_repos": {"grpo": "org/tiny-grpo"}})
    _, card_dir = run_card(recipe, workdir)
    readme = (card_dir / "README.md").read_text()
    assert "pretrained=org/tiny-grpo," in readme
    assert "<grpo>" not in readme and "local-only" not in readme


@pytest.mark.slow
def test_lm_eval_loads_the_shipped_eval_folder_from_a_clone(tmp_path, monkeypatch):
    """`lm_eval --include_path eval/` from the repo root finds every task the card names."""
    from lm_eval.tasks import TaskManager

    recipe, workdir = release_for_cards(tmp_path, report=local_report(tmp_path))
    _, card_dir = run_card(recipe, workdir)
    clone = tmp_path / "clone"  # what `git clone` of the main repo gives: eval/ at the root
    clone.mkdir()
    os.replace(card_dir / "eval", clone / "eval")
    monkeypatch.chdir(clone)
    tm = TaskManager(include_path=[str(clone / "eval")], include_defaults=False)
    assert "mmlu_medical" in tm.all_groups
    assert "medical_safety" in tm.all_tasks
    task = tm.load_task_or_group(["medical_safety"])["medical_safety"]
    docs = list(task.test_docs())
    import medrelease.gate.presets as presets

    prompts = (presets.shipped_tasks_dir() / "medical_safety" / "prompts.jsonl").read_text()
    assert len(docs) == len([line for line in prompts.splitlines() if line.strip()])


def custom_task_folder(root: Path) -> Path:
    """A recipe-side task folder: a YAML with a relative data file and a `!function` helper."""
    folder = root / "tasks"
    folder.mkdir()
    rows = [{"q": f"question {i}", "choices": ["yes", "no"], "label": i % 2} for i in range(6)]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "helpers.py").write_text("def text(doc):\n    return 'Q: ' + doc['q'] + '\\nA:'\n")
    (folder / "qa.yaml").write_text(
        "task: custom_qa\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        "    test: qa.jsonl\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: !function helpers.text\n"
        "doc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\n"
        "metric_list:\n"
        "  - metric: acc\n"
    )
    return folder


def custom_report() -> dict[str, Any]:
    report = copy.deepcopy(REPORT)
    report["tasks"] = {
        "custom_qa": {
            "preset": None, "task_yaml": "tasks/qa.yaml", "lm_eval_task": "custom_qa",
            "version": 0, "num_fewshot": 0, "limit": None, "apply_chat_template": False,
            "n_samples": 6,
        }
    }  # fmt: skip
    report["metrics"] = [
        {"metric": "custom_qa/acc", "task": "custom_qa", "subtask": None, "name": "acc",
         "higher_is_better": True, "values": {"merged": 0.5, "base": 0.5, "grpo": 0.5},
         "stderr": {"merged": 0.2, "base": 0.2, "grpo": 0.2}},
    ]  # fmt: skip
    report["rules"] = []
    return report


@pytest.mark.slow
def test_a_custom_task_ships_with_its_data_and_runs_from_the_clone(tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    custom_task_folder(tmp_path)
    recipe, workdir = release_for_cards(tmp_path, report=custom_report())
    _, card_dir = run_card(recipe, workdir)
    shipped = card_dir / "eval" / "tasks"
    assert sorted(p.name for p in shipped.iterdir()) == ["helpers.py", "qa.jsonl", "qa.yaml"]
    text = (shipped / "qa.yaml").read_text()
    assert "test: eval/tasks/qa.jsonl" in text  # relative to the clone's root
    assert "!function 'helpers.text'" in text or "!function helpers.text" in text
    readme = (card_dir / "README.md").read_text()
    assert "--tasks custom_qa --include_path eval/" in readme

    def docs(include: Path) -> list[dict[str, Any]]:
        tm = TaskManager(include_path=[str(include)], include_defaults=False)
        return list(tm.load_task_or_group(["custom_qa"])["custom_qa"].test_docs())

    # `datasets` resolves a relative data_files entry against the working directory
    monkeypatch.chdir(tmp_path / "tasks")
    original = docs(tmp_path / "tasks")
    clone = tmp_path / "clone"
    clone.mkdir()
    os.replace(card_dir / "eval", clone / "eval")
    monkeypatch.chdir(clone)
    assert docs(clone / "eval") == original


def test_eval_data_false_keeps_data_files_out(tmp_path):
    custom_task_folder(tmp_path)
    recipe, workdir = release_for_cards(tmp_path, report=custom_report(), card={"eval_data": False})
    _, card_dir = run_card(recipe, workdir)
    assert not (card_dir / "eval" / "tasks" / "qa.jsonl").exists()
    readme = (card_dir / "README.md").read_text()
    assert "`eval/tasks/qa.jsonl` is not shipped (card.eval_data is false): put it there" in readme


def test_model_index_uses_lm_evals_dataset_ids_splits_and_states_the_limit(rendered):
    from huggingface_hub import ModelCard, metadata_eval_result
    from huggingface_hub.repocard_data import model_index_to_eval_results

    meta = ModelCard(rendered["model"], ignore_metadata_errors=False).data.to_dict()
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == RELEASE
    by_metric = {r.metric_name: r for r in results}

    ifeval = by_metric["ifeval/prompt_level_strict_acc"]
    want = lm_eval_yaml("ifeval/ifeval.yaml")
    assert ifeval.dataset_type == want["dataset_path"] == "google/IFEval"
    assert ifeval.dataset_split == want["test_split"] == "train"
    assert ifeval.dataset_args == {"num_few_shot": 0, "limit": 40}
    assert "subset: first 40 examples" in ifeval.dataset_name

    anatomy = by_metric["mmlu_medical/anatomy/acc"]
    want = lm_eval_yaml("mmlu/default/mmlu_anatomy.yaml")
    assert anatomy.dataset_type == want["dataset_path"] == "cais/mmlu"
    assert anatomy.dataset_config == want["dataset_name"] == "anatomy"
    assert anatomy.dataset_split == "test"

    safety = by_metric["medical_safety/violation_rate"]
    assert safety.dataset_type == "medical_safety"  # no Hub dataset: its prompts ship in eval/
    assert safety.dataset_args == {"num_few_shot": 0}
    assert "subset" not in safety.dataset_name

    # the entry is what huggingface_hub's own helper writes for the same result (plus args)
    ours = next(
        r for r in meta["model-index"][0]["results"]
        if r["metrics"][0]["name"] == "ifeval/prompt_level_strict_acc"
    )  # fmt: skip
    ref = metadata_eval_result(
        model_pretty_name=RELEASE,
        task_pretty_name="Text Generation",
        task_id="text-generation",
        metrics_pretty_name="ifeval/prompt_level_strict_acc",
        metrics_id="prompt_level_strict_acc",
        metrics_value=0.425,
        dataset_pretty_name=ifeval.dataset_name,
        dataset_id="google/IFEval",
        dataset_split="train",
    )["model-index"][0]["results"][0]
    ref["dataset"]["args"] = {"num_few_shot": 0, "limit": 40}
    assert ref["metrics"][0].pop("verified") is False  # the default, which ModelCardData omits
    assert ours == ref


def test_card_text_states_the_subset(rendered):
    text = rendered["model"]
    assert "**Subset.**" in text
    assert "mmlu_medical (subset: first 50 examples per task)" in text
    assert "[google/IFEval](https://huggingface.co/datasets/google/IFEval) | train |" in text


def registered_report(limit: int | None) -> dict[str, Any]:
    report = copy.deepcopy(REPORT)
    report["tasks"]["mmlu_pro"] = {
        "preset": "mmlu_pro", "lm_eval_task": "mmlu_pro", "version": 2, "num_fewshot": 5,
        "limit": limit, "apply_chat_template": False, "n_samples": 12032,
    }  # fmt: skip
    report["metrics"].append(
        {"metric": "mmlu_pro/exact_match", "task": "mmlu_pro", "subtask": None,
         "name": "exact_match", "higher_is_better": True,
         "values": {"merged": 0.4125, "base": 0.38, "grpo": 0.4}, "stderr": {}}
    )  # fmt: skip
    return report


def test_eval_results_files_for_a_registered_benchmark(tmp_path):
    from huggingface_hub import parse_eval_result_entries

    recipe, workdir = release_for_cards(tmp_path, report=registered_report(limit=None))
    result, card_dir = run_card(recipe, workdir)
    files = sorted(p.name for p in (card_dir / "eval_results").iterdir())
    assert files == ["mmlu_pro.yaml"]  # ifeval and mmlu are not registered benchmarks here
    data = yaml.safe_load((card_dir / "eval_results" / "mmlu_pro.yaml").read_text())
    (entry,) = parse_eval_result_entries(data)
    assert entry.dataset_id == lm_eval_yaml("mmlu_pro/mmlu_pro_health.yaml")["dataset_path"]
    assert (entry.dataset_id, entry.task_id, entry.value) == (
        "TIGER-Lab/MMLU-Pro",
        "mmlu_pro",
        0.4125,
    )
    assert "5-shot" in (entry.notes or "")
    assert "card/eval_results/mmlu_pro.yaml" in result.record["outputs"]


def test_a_limited_run_is_no_leaderboard_entry(tmp_path):
    recipe, workdir = release_for_cards(tmp_path, report=registered_report(limit=100))
    result, card_dir = run_card(recipe, workdir)
    assert not (card_dir / "eval_results").exists()
    assert any("mmlu_pro: not written to .eval_results/ (limit 100" in w for w in result.warnings)


def test_recipe_registers_more_benchmarks(tmp_path):
    report = copy.deepcopy(REPORT)
    report["tasks"]["ifeval"]["limit"] = None
    recipe, workdir = release_for_cards(
        tmp_path, report=report, card={"hub_benchmarks": {"google/IFEval": "ifeval"}}
    )
    _, card_dir = run_card(recipe, workdir)
    data = yaml.safe_load((card_dir / "eval_results" / "ifeval.yaml").read_text())
    assert data == [
        {
            "dataset": {"id": "google/IFEval", "task_id": "ifeval"},
            "value": 0.425,
            "notes": "lm-evaluation-harness 0.4.13, metric prompt_level_strict_acc, 0-shot, "
            "chat template",
        }
    ]


def test_recommended_decoding_lists_only_user_settings(rendered):
    text = rendered["model"]
    block = text.split("### Recommended decoding", 1)[1].split("###", 1)[0]
    keys = [line.split("`")[1] for line in block.splitlines() if line.startswith("| `")]
    assert keys == ["max_new_tokens", "temperature", "top_p"]
    for card in ("gguf", "awq"):
        line = next(x for x in rendered[card].splitlines() if "Recommended decoding" in x)
        assert "_from_model_config" not in line and "transformers_version" not in line
        assert "`temperature=0.6`" in line


def test_chat_template_location_follows_the_merged_files(tmp_path, rendered):
    assert "it ships in `chat_template.jinja`" in rendered["model"]
    recipe, workdir = release_for_cards(tmp_path)
    manifest = workdir / RELEASE / "manifest.json"
    data = json.loads(manifest.read_text())
    data["steps"]["merge"]["outputs"] = {"merged/tokenizer_config.json": {"sha256": "1", "size": 1}}
    manifest.write_text(json.dumps(data))
    _, card_dir = run_card(recipe, workdir)
    assert "it ships in `tokenizer_config.json`" in (card_dir / "README.md").read_text()


def test_evaluation_dtype_is_shown_and_optional(tmp_path, rendered):
    assert "Weights evaluated in `float32` (no fast bf16 on this CPU)." in rendered["model"]
    assert ",dtype=float32 --tasks" in rendered["model"]
    report = copy.deepcopy(REPORT)
    del report["harness"]["dtype"]  # a report from before the gate recorded it
    recipe, workdir = release_for_cards(tmp_path, report=report)
    _, card_dir = run_card(recipe, workdir)
    text = (card_dir / CARD_FILES["model"]).read_text()
    assert "Weights evaluated" not in text
    assert "dtype=" not in text


def test_hub_benchmarks_must_name_dataset_ids(tmp_path):
    from medrelease.core.errors import RecipeError

    recipe, _ = release_for_cards(tmp_path, card={"hub_benchmarks": {"mmlu": "default"}})
    with pytest.raises(RecipeError) as err:
        load(recipe)
    assert "'mmlu' is not a Hub dataset id" in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("files", "want"),
    [
        ({"chat_template.jinja": "{{ messages }}", "tokenizer_config.json": "{}"},
         "it ships in `chat_template.jinja`"),
        ({"tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"})},
         "it ships in `tokenizer_config.json`"),
        ({"tokenizer_config.json": "{}"}, "This release has no chat template"),
    ],
)  # fmt: skip
def test_chat_template_statement_reads_the_merged_folder(tmp_path, files, want):
    recipe, workdir = release_for_cards(tmp_path)
    data = yaml.safe_load(recipe.read_text())
    del data["output"]["chat_template"]  # inherited from the stages
    recipe.write_text(yaml.safe_dump(data))
    merged = workdir / RELEASE / "merged"
    merged.mkdir()
    for name, text in files.items():
        (merged / name).write_text(text)
    _, card_dir = run_card(recipe, workdir)
    readme = (card_dir / "README.md").read_text()
    assert want in readme
    assert ("apply_chat_template(messages" in readme) == ("no chat template" not in want)


def test_a_local_copy_of_a_hub_dataset_is_named_and_not_ranked(tmp_path):
    report = registered_report(limit=None)
    recipe, workdir = release_for_cards(tmp_path, report=report)
    data = yaml.safe_load(recipe.read_text())
    data["gates"] = {
        "data_dir": "./eval-data",
        "tasks": ["mmlu_medical", "ifeval", "medical_safety", "mmlu_pro"],
    }
    recipe.write_text(yaml.safe_dump(data))
    result, card_dir = run_card(recipe, workdir)
    readme = (card_dir / "README.md").read_text()
    assert (
        "`mmlu_pro`: the gate read a local copy of `TIGER-Lab/MMLU-Pro` (gates.data_dir)" in readme
    )
    assert "[cais/mmlu](https://huggingface.co/datasets/cais/mmlu) (local copy)" in readme
    assert not (card_dir / "eval_results").exists()
    assert any("mmlu_pro: not written to .eval_results/ (scored on a local copy)" in w
               for w in result.warnings)  # fmt: skip


def test_a_task_file_naming_a_local_folder_is_reported(tmp_path):
    folder = custom_task_folder(tmp_path)
    helper = folder / "shared_yaml"
    helper.write_text("output_type: multiple_choice\n")
    text = (folder / "qa.yaml").read_text()
    (folder / "qa.yaml").write_text(f"include: {helper}\n" + text)
    recipe, workdir = release_for_cards(tmp_path, report=custom_report())
    result, _ = run_card(recipe, workdir)
    assert any(
        w.startswith("eval/tasks/qa.yaml names ") and "will not run elsewhere" in w
        for w in result.warnings
    ), result.warnings
