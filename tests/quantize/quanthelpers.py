"""A release folder whose merged/ is a tiny llama (SentencePiece, hidden 256) with a chat template.

The quantize step only reads <workdir>/<release>/merged, so copying a tiny model there stands
in for `medrelease merge` (tested in tests/merge) and keeps these tests short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from helpers import write_recipe
from medrelease.testing.tiny import ALPACA_TEMPLATE

RELEASE = "tiny-med"


def make_release(
    workdir: Path, model: Path, quantize: dict[str, Any], *, name: str = RELEASE
) -> Path:
    """Write a recipe (stage `base` = model) and copy `model` to <workdir>/<name>/merged."""
    merged = workdir / name / "merged"
    shutil.copytree(model, merged)
    cfg_path = merged / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("chat_template", ALPACA_TEMPLATE)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return write_recipe(
        workdir / "recipe.yaml",
        {"base": model},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 1.0}}]},
        name=name,
        quantize=quantize,
    )


def quantize_recorded(recipe: Path, workdir: Path, **kw: Any) -> Any:
    """`quantize_release` on `recipe`, returning the recorded StepResult also when a required
    quant was rejected: the step then raises QuantRejected (exit 5) after recording, and these
    tests look at the record either way (the rule itself: tests/quantize/test_rejected_rule.py)."""
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release
    from medrelease.quantize.verdict import QuantRejected

    kw.setdefault("reporter", Reporter(quiet=True))
    try:
        return quantize_release(load_recipe(recipe), workdir=workdir, **kw)
    except QuantRejected as err:
        assert err.result is not None and err.result.record["status"] == "failed"
        return err.result
