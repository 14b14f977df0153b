"""actionlint on the workflows and on the composite action's steps.

actionlint checks workflow files, not action metadata, so the action's steps are linted inside a
synthesized reusable workflow whose `workflow_call` inputs are the action's inputs: expressions,
`inputs.*` references, `uses:` inputs of known actions and untrusted-input injection are then
checked exactly as in a workflow. Planted mistakes must be reported too, so a runner that
silently reports nothing cannot pass. Everything is linted in one Node.js call (start-up of the
WebAssembly linter costs seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from action.action_support import REPO, LintResults, apply_config, format_problems, load_yaml_file

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))

PLANTED = (
    "on: push\n"
    "jobs:\n"
    "  a:\n"
    "    runs-on: ubuntu-latest\n"
    "    steps:\n"
    "      - uses: actions/checkout@v4\n"
    "        with: {fetch-depht: 0}\n"
    "      - run: echo '${{ github.event.pull_request.title }}'\n"
    "      - run: echo '${{ steps.nope.outputs.x }}'\n"
)


def synthesize_workflow(action: dict[str, Any]) -> dict[str, Any]:
    inputs = {
        name: {
            "type": "string",
            "required": bool(spec.get("required", False)),
            **({"default": str(spec["default"])} if "default" in spec else {}),
        }
        for name, spec in (action.get("inputs") or {}).items()
    }
    return {
        "name": f"action {action.get('name', '')}",
        "on": {"workflow_call": {"inputs": inputs}},
        "permissions": {"contents": "read"},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }


@pytest.fixture(scope="module")
def linted(actionlint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("actionlint")
    action_text = yaml.safe_dump(
        synthesize_workflow(load_yaml_file(REPO / "action.yml")), sort_keys=False
    )
    release_text = (REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert "inputs.recipe" in action_text and "if-no-files-found:" in release_text
    assert "x64, gpu]" in release_text
    files = {
        "planted": PLANTED,
        "action": action_text,
        "action_typo": action_text.replace("inputs.recipe", "inputs.recipee", 1),
        "release_typo": release_text.replace("if-no-files-found:", "if-no-file-found:"),
        # a runner label the config does not declare is still an error
        "release_label": release_text.replace("x64, gpu]", "x64, gpux]"),
    }
    paths = {key: tmp / f"{key}.yml" for key in files}
    for key, text in files.items():
        paths[key].write_text(text, encoding="utf-8")
    results: LintResults = apply_config(actionlint(*WORKFLOWS, *paths.values()))
    return {
        "workflows": {str(p): results[str(p)] for p in WORKFLOWS},
        **{key: results[str(path)] for key, path in paths.items()},
        "action_text": action_text,
    }


def messages(problems: list[dict[str, Any]]) -> str:
    return "\n".join(p["message"] for p in problems)


def test_the_linter_reports_planted_mistakes(linted):
    text = messages(linted["planted"])
    assert "fetch-depht" in text  # unknown input of a known action
    assert "untrusted" in text  # script injection
    assert '"nope"' in text  # reference to a step that does not exist


def test_workflows_pass_actionlint(linted):
    names = {Path(p).name for p in linted["workflows"]}
    assert {"release.yml", "ci.yml"} <= names
    assert not any(linted["workflows"].values()), format_problems(linted["workflows"])


def test_action_steps_pass_actionlint(linted):
    assert not linted["action"], (
        format_problems({"action.yml (synthesized)": linted["action"]})
        + "\n"
        + linted["action_text"]
    )


def test_the_synthesized_workflow_catches_a_wrong_input_name(linted):
    assert "recipee" in messages(linted["action_typo"])


def test_a_typo_in_the_release_workflow_is_caught(linted):
    assert "if-no-file-found" in messages(linted["release_typo"])


def test_only_the_declared_gpu_label_is_known(linted):
    assert 'label "gpux" is unknown' in messages(linted["release_label"])
    assert "gpu" not in messages(linted["release_label"]).replace("gpux", "")
