"""The seed recipes in merges/: valid, sourced, real Hub stages, and ready for stand-ins.

STANDIN_ARCH says which tiny architecture (medrelease.testing.tiny.ARCHS) stands in for each
recipe's stages when it runs end to end offline (`--stage NAME=PATH` overrides); every recipe
also states it in a `# standin-arch:` comment line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from medrelease.pipeline.recipes import load_recipe
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage
from medrelease.testing.tiny import ARCHS

REPO = Path(__file__).resolve().parents[2]
MERGES = REPO / "merges"

STANDIN_ARCH = {
    "afm-4.5b-openmed.yaml": "arcee",
    "med-advisor-4b.yaml": "qwen3",
    "meditron3-qwen2.5-7b.yaml": "qwen2",
    "qwen-4b-trad.yaml": "qwen3",
    "medswin-7b-sft.yaml": "llama",
}
RECIPES = sorted(MERGES.glob("*.yaml"))


def load(name: str) -> LoadedRecipe:
    return load_recipe(MERGES / name, check_merge=False)


def test_every_recipe_has_a_standin_architecture():
    assert {p.name for p in RECIPES} == set(STANDIN_ARCH)
    for path in RECIPES:
        declared = re.findall(r"^# standin-arch: (\S+)$", path.read_text(), flags=re.M)
        assert declared == [STANDIN_ARCH[path.name]], path.name
        assert STANDIN_ARCH[path.name] in ARCHS


@pytest.mark.slow  # the first one imports mergekit and transformers
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_validate_accepts_the_recipe(path: Path, capsys: pytest.CaptureFixture[str]):
    from medrelease.cli import main

    assert main(["validate", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["valid"] is True
    assert summary["release"]["name"] == yaml.safe_load(path.read_text())["release"]["name"]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_stages_are_hub_ids_or_adapters(path: Path):
    recipe = load(path.name).recipe
    for name, spec in recipe.stages.items():
        assert isinstance(spec, HubStage | AdapterStage), f"{path.name}: {name} is a local path"
        if isinstance(spec, AdapterStage):
            assert isinstance(recipe.stages[spec.base], HubStage), "adapters sit on Hub models"
    assert all(recipe.stage_lineage(n)[0] in recipe.stages for n in recipe.stages)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_states_its_sources_and_guesses(path: Path):
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line)
    text = "\n".join(head)
    assert "Where each fact comes from" in text and "Best guess" in text, path.name
    recipe = load(path.name).recipe
    for spec in recipe.stages.values():
        if isinstance(spec, HubStage):
            # every Hub id used is named in the sources, or is the base named on a card
            assert spec.hub.split("/")[1].split("-")[0] in text, (path.name, spec.hub)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_single_model_merges_pass_the_model_through(path: Path):
    merge = load(path.name).recipe.merge
    if merge["merge_method"] != "linear":
        return
    (model,) = merge["models"]
    assert model["parameters"] == {"weight": 1.0}
    assert "passes through" in path.read_text(), "say why a one-model merge is used"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_stand_in_overrides_replace_every_stage(path: Path, tmp_path: Path):
    stages = load(path.name).recipe.stages
    overrides = {}
    for name in stages:
        (tmp_path / name).mkdir()
        overrides[name] = str(tmp_path / name)
    loaded = load_recipe(path, overrides=overrides)  # merge block checked too
    for name, spec in loaded.recipe.stages.items():
        if isinstance(stages[name], AdapterStage):
            assert isinstance(spec, AdapterStage) and spec.adapter == str(tmp_path / name)
        else:
            assert spec.kind == "local" and spec.path == str(tmp_path / name)


def test_afm_fuses_the_grpo_checkpoint_into_the_base():
    r = load("afm-4.5b-openmed.yaml").recipe
    assert r.stages["base"].hub == "arcee-ai/AFM-4.5B"
    assert r.stages["grpo"].hub == "openmed-community/AFM-4.5B-OpenMed-RL-CoT"
    assert r.merge["merge_method"] == "arcee_fusion"
    assert r.merge["base_model"] == "base" and r.merge["models"] == [{"model": "grpo"}]
    assert r.gates is not None
    assert [t.label for t in r.gates.tasks] == ["ifeval", "mmlu_medical", "mmlu_pro"]
    assert {rule.vs for rule in r.gates.rules} == {"base", "grpo"}
    assert r.release.license == "apache-2.0"


def test_med_advisor_gates_safety_and_ships_its_decoding():
    r = load("med-advisor-4b.yaml").recipe
    assert r.stages["base"].hub == "Qwen/Qwen3-4B-Base"
    assert r.stages["phase3"].hub == "vmal/med-advisor-4b"
    gen = r.output.generation_config or {}
    assert gen["do_sample"] is False
    assert gen["repetition_penalty"] == 1.1 and gen["no_repeat_ngram_size"] == 6
    assert r.gates is not None
    floors = {rule.metric: rule.max for rule in r.gates.rules if rule.kind == "max"}
    assert floors["medical_safety/violation_rate"] == 0.05


def test_med_advisor_decoding_is_a_valid_generation_config():
    from transformers import GenerationConfig

    gen = load("med-advisor-4b.yaml").recipe.output.generation_config or {}
    cfg = GenerationConfig(**gen)
    cfg.validate(strict=True)
    assert cfg.to_diff_dict()["no_repeat_ngram_size"] == 6


def test_meditron_is_compared_with_the_instruct_model_and_research_only():
    r = load("meditron3-qwen2.5-7b.yaml").recipe
    assert r.stages["instruct"].hub == "Qwen/Qwen2.5-7B-Instruct"
    assert r.stages["meditron"].hub == "OpenMeditron/Meditron3-Qwen2.5-7B"
    assert r.gates is not None and r.gates.baselines == ["instruct"]
    assert [t.label for t in r.gates.tasks] == ["medmcqa", "medqa", "pubmedqa"]
    assert all(rule.vs == "instruct" for rule in r.gates.rules)
    assert r.card is not None and str(r.card.intended_use).startswith("Research only")


def test_qwen_trad_is_a_dora_adapter_gated_on_french_mcq():
    loaded = load("qwen-4b-trad.yaml")
    r = loaded.recipe
    trad = r.stages["trad"]
    assert isinstance(trad, AdapterStage) and trad.base == "base"
    assert r.stages["base"].hub == "Qwen/Qwen3-4B-Instruct-2507"
    assert r.gates is not None
    (task,) = r.gates.tasks
    assert (loaded.base_dir / str(task.task_yaml)).is_file()
    assert {rule.metric for rule in r.gates.rules} == {"fr_mcq/exact_match", "fr_mcq/hamming"}


def test_french_mcq_task_loads_in_lm_eval_and_scores_sets():
    from datasets import Dataset
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(MERGES / "tasks" / "medinjection_fr_mcq" / "medinjection_fr_mcq.yaml")
    assert cfg["task"] == "medinjection_fr_mcq"
    assert {m["metric"] for m in cfg["metric_list"]} == {"exact_match", "hamming"}
    docs = Dataset.from_list(
        [
            {"instruction": "Q1", "context": "A. x\nB. y", "answer": "A, C", "type": "MCQ"},
            {"instruction": "Q2", "context": "", "answer": "free text", "type": "OEQ"},
            {"instruction": "Q3", "context": "", "answer": "B", "type": "mcqu"},
        ]
    )
    kept = cfg["process_docs"](docs)
    assert [d["instruction"] for d in kept] == ["Q1", "Q3"]
    score = cfg["process_results"]
    assert score(kept[0], ["A, C\nbecause"]) == {"exact_match": 1.0, "hamming": 1.0}
    assert score(kept[0], ["Réponse : A"]) == {"exact_match": 0.0, "hamming": 0.5}


def test_medswin_ships_an_alpaca_chat_template_and_two_gguf_quants():
    from transformers.utils.chat_template_utils import render_jinja_template

    r = load("medswin-7b-sft.yaml").recipe
    assert r.stages["base"].hub == "medalpaca/medalpaca-7b"
    assert r.quantize is not None and r.quantize.gguf is not None
    assert r.quantize.gguf.types == ["Q8_0", "Q4_K_M"] and r.quantize.awq is None
    template = r.output.chat_template
    assert isinstance(template, str)
    rendered, _ = render_jinja_template(
        conversations=[[{"role": "user", "content": "What is anemia?"}]],
        chat_template=template,
        add_generation_prompt=True,
        eos_token="</s>",
        bos_token="<s>",
    )
    assert rendered == [
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is anemia?\n\n### Response:\n"
    ]
    rendered, _ = render_jinja_template(
        conversations=[
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        ],
        chat_template=template,
        eos_token="</s>",
        bos_token="<s>",
    )
    assert rendered == ["Be brief.\n\n### Instruction:\nQ\n\n### Response:\nA</s>\n\n"]
