"""merge (mergekit) -> gate (lm-evaluation-harness) -> card on tiny llama stages.

The card is rendered from the report the real gate step wrote, and every number in its
evaluation tables is checked against that report (same parsing as test_numbers.py).
"""

from __future__ import annotations

import json

import pytest

from card.test_numbers import fmt, fmt_delta, section, tables
from gate.gatehelpers import write_demo_task
from helpers import write_recipe

pytestmark = pytest.mark.slow


def test_card_numbers_equal_the_real_gate_report(tmp_path, llama):
    from huggingface_hub import ModelCard

    from medrelease.card.step import card_release
    from medrelease.core.console import Reporter
    from medrelease.gate.step import gate_release
    from medrelease.merge.step import merge_release
    from medrelease.pipeline.recipes import load_recipe

    write_demo_task(tmp_path / "tasks", relative=True)  # the gate tests' tiny MCQ task
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        {"base": llama["base"], "sft": {"path": str(llama["sft"]), "parent": "base"}},
        {
            "merge_method": "linear",
            "models": [
                {"model": "base", "parameters": {"weight": 0.5}},
                {"model": "sft", "parameters": {"weight": 0.5}},
            ],
            "dtype": "float32",
        },
        name="tiny-pipe",
        gates={
            "baselines": ["base", "sft"],
            "batch_size": 4,
            "device": "cpu",
            "tasks": [{"name": "card_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
            "rules": [{"metric": "card_mcq/acc", "vs": "base", "max_drop": 1.0}],
        },
        card={"stage_licenses": {"base": "apache-2.0", "sft": "apache-2.0"}},
    )
    loaded = load_recipe(recipe)
    workdir = tmp_path / "build"
    quiet = Reporter(quiet=True)
    merge_release(loaded, workdir=workdir, reporter=quiet)
    gate_release(loaded, workdir=workdir, reporter=quiet)
    card_release(loaded, workdir=workdir, reporter=quiet)

    release = workdir / "tiny-pipe"
    report = json.loads((release / "gates" / "report.json").read_text())
    text = (release / "card" / "README.md").read_text()
    (metric,) = [m for m in report["metrics"] if m["metric"] == "card_mcq/acc"]
    cand = report["candidate"]
    summary = next(t for t in tables(section(text, "Evaluation")) if t[1][0] == "metric")
    _, header, rows = summary
    (row,) = [r for r in rows if r[0].startswith("`card_mcq/acc`")]
    for col, cell in zip(header[1:], row[1:], strict=True):
        if col.startswith("Δ vs "):
            base = col.removeprefix("Δ vs ")
            assert cell == fmt_delta(metric["values"][cand] - metric["values"][base])
        else:
            value, _, err = cell.partition(" ± ")
            assert value == fmt(metric["values"][col])
            if metric["stderr"].get(col) is not None:
                assert err == fmt(metric["stderr"][col])
    results = ModelCard(text).data.eval_results
    assert {r.metric_name: r.metric_value for r in results}["card_mcq/acc"] == (
        metric["values"][cand]
    )
    assert f"lm-evaluation-harness {report['harness']['lm_eval']}" in text
    assert (release / "card" / "metrics.png").is_file()
