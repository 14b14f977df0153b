"""Rejected quants in a release: one rule (quantize/verdict.py), through `quantize` and `release`.

Every listed GGUF type (and the AWQ scheme) is required unless the recipe marks it optional. A
rejected required quant stops `quantize` and `release` with exit 5 before card and publish,
naming the measure and its limit; a rejected optional one is left out of the release and the
card says which quant was not shipped and why. BF16 is rejected here on purpose: an impossible
limit on its largest logit difference. Float types keep these tests cheap (the converter makes
them, no quantizer run) and independent of llama.cpp's quantized CPU kernels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.gatehelpers import write_demo_task
from helpers import run_cli
from quantize.quanthelpers import RELEASE, quant_release

pytestmark = pytest.mark.slow

IMPOSSIBLE = {"BF16": {"max_abs_logit_diff": 1e-4}}
TYPES = ["F16", "BF16"]


def _set_optional(recipe: Path, optional: list[str]) -> None:
    data = yaml.safe_load(recipe.read_text())
    data["quantize"]["gguf"]["optional"] = optional
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_quantize_required_rejected_exits_5_then_optional_is_left_out(
    tmp_path: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str], wide_console: None
) -> None:
    gguf = {"types": TYPES, "thresholds": IMPOSSIBLE}
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": gguf}).recipe
    root = tmp_path / RELEASE
    capsys.readouterr()

    # required (the default): exit 5, the measure and its limit named, the record kept
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 5
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the table's data still comes out, as one document
    assert summary["status"] == "failed"
    err = " ".join(captured.err.split())
    assert "1 required quant(s) rejected: gguf BF16: max_abs_logit_diff" in err, err
    assert "broke its limit 0.0001 (max_abs_logit_diff)" in err, err
    assert "quantize.gguf.optional: [BF16]" in err, err  # the fix names the way out
    record = _manifest(root)["steps"]["quantize"]
    assert record["status"] == "failed"
    quants = {q["type"]: q for q in record["quants"]}
    assert quants["F16"]["accepted"] and quants["F16"]["required"]
    bf16 = quants["BF16"]
    assert bf16["accepted"] is False and bf16["required"] is True
    assert bf16["rejection"]["check"] == "logits"
    assert bf16["rejection"]["measure"] == "max_abs_logit_diff"
    assert bf16["rejection"]["limit"] == 1e-4 and bf16["rejection"]["value"] > 1e-4
    assert (root / "quant" / "rejected" / "gguf" / f"{RELEASE}-BF16.gguf").is_file()

    # a failed step is never current: `status` says so, and a rerun redoes it
    assert run_cli("status", recipe, "-w", tmp_path, "--json") == 0
    states = {s["step"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert states["quantize"]["state"] == "stale", states["quantize"]
    assert states["quantize"]["why"] == ["last run failed"]

    # optional: the same rejection leaves BF16 out, exit 0, the table says why
    _set_optional(recipe, ["bf16"])  # normalised like types
    assert run_cli("quantize", recipe, "-w", tmp_path) == 0
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if " BF16 " in ln)
    assert "no" in line and "max_abs_logit_diff" in line
    record = _manifest(root)["steps"]["quantize"]
    assert record["status"] == "done"
    bf16 = {q["type"]: q for q in record["quants"]}["BF16"]
    assert bf16["accepted"] is False and bf16["required"] is False
    assert bf16["rejection"]["measure"] == "max_abs_logit_diff"
    assert sorted(p.name for p in (root / "quant" / "gguf").iterdir()) == [f"{RELEASE}-F16.gguf"]


def test_quantize_optional_must_name_a_listed_type(
    tmp_path: Path, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = quant_release(
        tmp_path, tiny_llama, {"gguf": {"types": ["F16"], "optional": ["Q2_K"]}}
    ).recipe
    capsys.readouterr()
    assert run_cli("validate", recipe) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "optional names ['Q2_K'], which are not listed types (['F16'])" in err, err


def _release_recipe(root: Path, llama: dict[str, Path]) -> Path:
    write_demo_task(root / "tasks", relative=True)
    recipe = {
        "release": {
            "name": "tiny-rule",
            "version": "0.1.0",
            "repo": "medrelease-tests/tiny-rule",
            "license": "apache-2.0",
        },
        "stages": {"base": str(llama["base"])},
        "merge": {
            "merge_method": "linear",
            "models": [{"model": "base", "parameters": {"weight": 1.0}}],
            "dtype": "float32",
        },
        "gates": {
            "device": "cpu",
            "batch_size": 4,
            "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
            "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
        },
        "quantize": {"gguf": {"types": TYPES, "thresholds": IMPOSSIBLE}},
        "card": {"stage_licenses": {"base": "apache-2.0"}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_release_stops_before_card_on_required_and_ships_without_optional(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _release_recipe(tmp_path, llama)
    workdir = tmp_path / "build"
    root = workdir / "tiny-rule"

    # required: release stops at quantize with exit 5 (it used to go on and exit 0)
    assert run_cli("release", recipe, "-w", workdir, "--no-publish") == 5
    err = " ".join(capsys.readouterr().err.split())
    assert "gguf BF16: max_abs_logit_diff" in err and "limit 0.0001" in err, err
    manifest = _manifest(root)
    assert "card" not in manifest["steps"] and not (root / "card").exists()
    assert manifest["steps"]["quantize"]["status"] == "failed"

    # optional: merge and gate are current; quantize reruns, card renders and says why
    _set_optional(recipe, ["BF16"])
    assert run_cli("release", recipe, "-w", workdir, "--no-publish", "--json") == 0
    states = {s["step"]: s["state"] for s in json.loads(capsys.readouterr().out)["steps"]}
    assert states == {"merge": "skipped", "gate": "skipped", "quantize": "ran", "card": "ran"}
    card = (root / "card" / "gguf" / "README.md").read_text()
    bf16 = {q["type"]: q for q in _manifest(root)["steps"]["quantize"]["quants"]}["BF16"]
    value = bf16["rejection"]["value"]
    assert "## Not shipped" in card
    assert f"- **BF16**: max_abs_logit_diff {value:g} against the merged model broke its " in card
    assert "limit 0.0001." in card
    assert "BF16" not in card.split("## Not shipped")[0]  # not in the files table
    assert "## Not shipped" not in (root / "card" / "README.md").read_text()
