"""The rejected-quant rule (quantize/verdict.py) on the real-model tier: SmolLM2-135M-Instruct
through `release`, with a required quant rejected (exit 5 before the card, naming the measure
and its limit), then the same quant optional (left out; the GGUF card says why).

BF16 gets an impossible limit on its largest logit difference (two runtimes never agree to
1e-6 on a real model's logits); F16 keeps the default limits and ships. Float types come from
the converter alone, so the test does not depend on llama.cpp's quantized CPU kernels. A real
merge, gate and two quantize runs: `make test-heavy`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli, write_recipe
from real.test_real_release import MODEL, write_mmlu_data

pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("MEDRELEASE_SKIP_REAL_MODELS") == "1",
        reason="MEDRELEASE_SKIP_REAL_MODELS=1",
    ),
]

NAME = "smollm2-rule"
LIMIT = 1e-6


def _recipe(tmp: Path, base: Path) -> Path:
    write_mmlu_data(tmp / "eval-data")
    return write_recipe(
        tmp / "recipe.yaml",
        {"base": base},
        {
            "merge_method": "linear",
            "models": [{"model": "base", "parameters": {"weight": 1.0}}],
            "dtype": "bfloat16",
        },
        name=NAME,
        gates={
            "device": "cpu",
            "batch_size": 8,
            "data_dir": "eval-data",
            "tasks": [{"preset": "mmlu_medical", "num_fewshot": 0}],
            "rules": [{"metric": "mmlu_medical/acc", "min": 0.0}],
        },
        quantize={
            "gguf": {
                "types": ["F16", "BF16"],
                "thresholds": {"BF16": {"max_abs_logit_diff": LIMIT}},
            }
        },
        card={"stage_licenses": {"base": "apache-2.0"}},
    )


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


def test_real_release_stops_on_required_and_ships_without_optional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medrelease.testing.realmodels import real_model

    recipe = _recipe(tmp_path, real_model(MODEL))
    workdir = tmp_path / "build"
    root = workdir / NAME

    assert run_cli("release", recipe, "-w", workdir, "--no-publish") == 5
    out, err = capsys.readouterr()
    err = " ".join(err.split())
    assert "1 required quant(s) rejected: gguf BF16: max_abs_logit_diff" in err, (out + err)[-3000:]
    assert f"broke its limit {LIMIT:.4g} (max_abs_logit_diff)" in err, err
    manifest = _manifest(root)
    assert manifest["steps"]["quantize"]["status"] == "failed"
    assert "card" not in manifest["steps"] and not (root / "card").exists()
    f16 = {q["type"]: q for q in manifest["steps"]["quantize"]["quants"]}["F16"]
    assert f16["accepted"], f16["reason"]  # the default limits hold on the real model

    data = yaml.safe_load(recipe.read_text())
    data["quantize"]["gguf"]["optional"] = ["BF16"]
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_cli("release", recipe, "-w", workdir, "--no-publish", "--json") == 0
    states = {s["step"]: s["state"] for s in json.loads(capsys.readouterr().out)["steps"]}
    assert states == {"merge": "skipped", "gate": "skipped", "quantize": "ran", "card": "ran"}
    bf16 = {q["type"]: q for q in _manifest(root)["steps"]["quantize"]["quants"]}["BF16"]
    assert bf16["accepted"] is False and bf16["required"] is False
    value = bf16["rejection"]["value"]
    assert value > LIMIT
    card = (root / "card" / "gguf" / "README.md").read_text()
    assert (
        f"- **BF16**: max_abs_logit_diff {value:g} against the merged model broke its limit "
        f"{LIMIT:g}." in card
    ), card
    assert f"{NAME}-F16.gguf" in card and f"{NAME}-BF16.gguf" not in card
    assert sorted(p.name for p in (root / "quant" / "gguf").iterdir()) == [f"{NAME}-F16.gguf"]
