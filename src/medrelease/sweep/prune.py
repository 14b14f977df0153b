"""Pruning a trial inside its one evaluation of the objective's task.

lm-eval scores the items in the order its batches finish them (longest prompts first, as in an
unpruned run: the same batches, so the same numbers). Every item's objective value is reported
to Optuna as one step (the item's id: WilcoxonPruner pairs trials item by item); every
`increment` items the pruner is asked (asking costs a Wilcoxon test, not a worse batching), and
a trial it prunes stops there (`StopEvaluation` out of lm-eval) with the outcome of the items
scored so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medrelease.gate.live_items import StopEvaluation
from medrelease.sweep.evaluate import SearchTask, item_scores, partial_outcome


@dataclass
class PruneWith:
    storage: str
    study_name: str
    p_threshold: float
    increment: int  # scored items between two checks (sweep.pruning.increment)


def optuna_trial(prune: PruneWith, trial_id: int) -> Any:
    """The running trial, from the study's database (a Ray worker opens it there too)."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental": its interface, not its results
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=prune.p_threshold)
    study = optuna.load_study(study_name=prune.study_name, storage=prune.storage, pruner=pruner)
    return optuna.trial.Trial(study, trial_id)


class LivePruner:
    """The `on_item` of the objective task's run (medrelease.gate.live_items)."""

    def __init__(self, trial: Any, stask: SearchTask, metric: str, increment: int):
        self.trial = trial
        self.stask = stask
        self.metric = metric
        self.check_every = increment
        self.logged: dict[str, list[dict[str, Any]]] = {}
        self.directions: dict[str, dict[str, bool]] = {}
        self.reported: set[int] = set()  # steps (items) already reported
        self.scored = 0  # items scored in this run
        self.partial: dict[str, Any] | None = None  # the scored items' outcome, once stopped

    def __call__(self, leaf: str, task: Any, samples: list[dict[str, Any]]) -> None:
        if leaf not in self.directions:
            self.directions[leaf] = dict(task.higher_is_better())
        self.logged.setdefault(leaf, []).extend(samples)
        self.scored += 1
        if self.scored % self.check_every:
            return
        outcome = partial_outcome(self.stask, self.logged, self.directions)
        self.report(outcome)
        if self.trial.should_prune():
            self.partial = outcome
            raise StopEvaluation(f"pruned after {self.scored} item(s)")

    def report(self, outcome: dict[str, Any]) -> None:
        """Each item's objective value not yet reported, as one step."""
        scores = item_scores(outcome, self.metric, list(self.stask.leaves))
        for step, value in sorted(scores.items()):
            if step not in self.reported:
                self.trial.report(value, step)
                self.reported.add(step)
