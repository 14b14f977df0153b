"""Score model folders on the demo tasks with lm-evaluation-harness used as a library.

This is the check that the stand-ins behave as designed (tests, build reports); release
gating itself is the gate step's job and reads the same task YAMLs from the demo recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.demo.paths import TASK_NAMES, TASKS_DIR


def evaluate_folders(
    models: Mapping[str, Path],
    *,
    tasks: Sequence[str] = TASK_NAMES,
    batch_size: int = 16,
    reporter: Reporter | None = None,
) -> dict[str, dict[str, float]]:
    """model name -> {"<task>/<metric>": value} for every model folder (hf backend, CPU)."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from medrelease.core.quiet import quiet_libraries

    quiet_libraries()
    reporter = reporter or Reporter()
    # include_defaults=False: only the demo tasks are indexed (skips scanning ~10k YAMLs)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    scores: dict[str, dict[str, float]] = {}
    with reporter.phase("evaluating demo tasks", total=len(models)) as advance:
        for name, folder in models.items():
            out = simple_evaluate(
                model="hf",
                model_args={"pretrained": str(folder), "dtype": "float32"},
                tasks=list(tasks),
                task_manager=manager,
                batch_size=batch_size,
                device="cpu",
                log_samples=False,
                random_seed=0,
                numpy_random_seed=0,
                torch_random_seed=0,
                fewshot_random_seed=0,
            )
            if out is None:  # only on non-zero ranks in distributed runs
                raise RuntimeError("lm_eval returned no results")
            scores[name] = flatten_results(out["results"])
            advance()
    return scores


NOT_METRICS = {"sample_len", "alias"}


def flatten_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """lm-eval's {"task": {"acc,none": x, "acc_stderr,none": s}} -> {"task/acc": x}."""
    flat: dict[str, float] = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric, _, _filter = key.partition(",")
            if metric.endswith("_stderr") or metric in NOT_METRICS:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            flat[f"{task}/{metric}"] = float(value)
    return flat
