"""Run a recipe's gate tasks on an already-built lm-eval model (e.g. a GGUF quant's LM).

Used by the quantize step to check a quant with the same tasks and metric names as
`gates/report.json`. No cache (the caller owns the model), no rules.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.recipe.loaded import LoadedRecipe


def evaluate_lm(
    lm: Any, loaded: LoadedRecipe, *, reporter: Reporter | None = None
) -> dict[str, float]:
    """{metric name: value} for every gate task of the recipe, evaluated on `lm`."""
    from medrelease.core.quiet import quiet_libraries
    from medrelease.gate.documents import apply_holdouts, holdouts_of
    from medrelease.gate.progress import lm_eval_progress
    from medrelease.gate.runner import (
        extract_outcome,
        metric_values,
        run_lm_eval,
        silence_progress_bars,
    )
    from medrelease.gate.step import gates_of
    from medrelease.gate.tasks import resolve_all

    silence_progress_bars()
    quiet_libraries()
    reporter = reporter or Reporter(quiet=True)
    gates = gates_of(loaded)
    values: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="medrelease-gate-tasks-") as tmp:
        tasks = resolve_all(gates, loaded.base_dir, Path(tmp), where=loaded.where)
        # the documents a sweep's hold-out left the gate (medrelease.gate.documents)
        for task in apply_holdouts(tasks, holdouts_of(loaded.recipe), gates, loaded.base_dir):
            with (
                reporter.phase(f"{task.label}: lm-eval", total=None) as advance,
                lm_eval_progress(advance),
            ):
                raw = run_lm_eval(lm, task)
            values.update(metric_values(extract_outcome(raw, task)))
    return values
