"""The quantize tests' release, and the quantize step's result whether or not it rejected.

Their release is built up to the merge by tests/releases.py, with the stage model standing in
for the merge (plus a chat template): the quantize step only reads <workdir>/<release>/merged,
and `medrelease merge` is tested in tests/merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import recipe_data
from medrelease.testing.tiny import ALPACA_TEMPLATE
from releases import BuiltRelease, built_release

RELEASE = "tiny-med"


def quant_release(
    workdir: Path, model: Path, quantize: dict[str, Any], *, name: str = RELEASE
) -> BuiltRelease:
    """A recipe (in `workdir`, stage `base` = `model`, this `quantize:` section) and its
    release built up to the merge in `workdir`."""
    linear = {
        "merge_method": "linear",
        "models": [{"model": "base", "parameters": {"weight": 1.0}}],
    }
    recipe = recipe_data({"base": model}, linear, name=name, quantize=quantize)
    return built_release(
        workdir, "merge", recipe, workdir=workdir, merged=model, chat_template=ALPACA_TEMPLATE
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
