"""The search split, document by document: which documents of which lm-eval (leaf) task the
sweep evaluates, checked to share no item with the gate's.

Two forms per gate task (`sweep.search.<task>`):
* `start` + `count`: documents of the split the gate evaluates, after the gate's first `limit`
  documents (the gate evaluates documents 0..limit-1), the same indices in every subtask;
* `split: NAME` (optional `start`, `count`): documents of another split of the task's dataset,
  e.g. MMLU's `validation`. Refused when it is the split the gate evaluates, when the task has
  no such split, or, where both splits are local files, when the two files are the same file or
  share a record (a validation file copied from the test file would tune on reported items).
  Without `count`, every document of the split (of each subtask; counted in the local file).

Runs inside `check_sweep`, before anything is merged or evaluated: a RecipeError (exit 2) names
the recipe's file and line of the offending `sweep.search` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.errors import RecipeError
from medrelease.gate.config import GatesConfig, GateTask
from medrelease.gate.documents import LeafData, count_docs, leaf_data, read_records
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.sweep.config import SearchItems, SweepConfig


@dataclass
class SearchPlan:
    label: str
    form: str  # range (after the gate's limit) | split (another dataset split) | holdout
    split: str | None  # the dataset split searched, when not the gate's
    leaves: dict[str, list[int]]  # lm-eval leaf task -> searched document indices
    text: str  # the split in words (report, card)

    @property
    def total(self) -> int:
        return sum(len(ix) for ix in self.leaves.values())


def plan_search(
    loaded: LoadedRecipe, sweep: SweepConfig, gates: GatesConfig
) -> dict[str, SearchPlan]:
    """Every searched task's documents; RecipeError (file and line) on any overlap."""
    by_label = {t.label: (i, t) for i, t in enumerate(gates.tasks)}
    plans: dict[str, SearchPlan] = {}
    for label, items in sweep.search.items():
        loc = ("sweep", "search", label)
        i, task = by_label[label]  # check_sweep checked the label
        leaves = leaf_data(task, gates, loaded.base_dir)
        if items.holdout is not None:
            plans[label] = _holdout_plan(loaded, label, i, task, items, gates, loc)
        elif items.split is None:
            plans[label] = _range_plan(loaded, label, i, task, items, leaves, loc)
        else:
            plans[label] = _split_plan(loaded, label, task, items, leaves, loc)
    return plans


def _holdout_plan(
    loaded: LoadedRecipe,
    label: str,
    i: int,
    task: GateTask,
    items: SearchItems,
    gates: GatesConfig,
    loc: tuple[Any, ...],
) -> SearchPlan:
    """A seeded share of each subtask's documents; the gate evaluates the others (it applies
    the same draw, medrelease.gate.documents), so the two are disjoint by construction."""
    from medrelease.gate.documents import held_out_samples

    h = items.holdout
    assert h is not None
    if task.limit is not None:
        raise RecipeError(
            f"sweep.search.{label}.holdout: the gate evaluates the documents the hold-out "
            f"leaves it, so gates.tasks.{i}.limit ({task.limit}) would take items the search "
            "was tuned on, or drop some",
            where=loaded.where((*loc, "holdout")),
            hint=f"remove gates.tasks.{i}.limit (the gate then reports every other document)",
        )
    try:
        search, gate = held_out_samples(task, gates, loaded.base_dir, h.fraction, h.seed)
    except RecipeError as err:  # said where the recipe asks for it
        raise RecipeError(
            err.message, where=loaded.where((*loc, "holdout")), hint=err.hint
        ) from None
    for leaf in search:
        if not search[leaf] or not gate[leaf]:  # lm-eval reads an empty `samples` as "all"
            size = len(search[leaf]) + len(gate[leaf])
            raise RecipeError(
                f"sweep.search.{label}.holdout: subtask {leaf} has {size} document(s), too few "
                "to give both the search and the gate at least one",
                where=loaded.where((*loc, "holdout")),
                hint="search another split of the dataset ({split: validation}), or drop "
                "the subtask from the task",
            )
    n, m = sum(map(len, search.values())), sum(map(len, gate.values()))
    text = (
        f"a seeded hold-out of {n} of {n + m} items (fraction {h.fraction:g}, seed {h.seed}; "
        f"the gate reports the other {m})"
    )
    return SearchPlan(label, "holdout", None, search, text)


def _range_plan(
    loaded: LoadedRecipe,
    label: str,
    i: int,
    task: GateTask,
    items: SearchItems,
    leaves: list[LeafData],
    loc: tuple[Any, ...],
) -> SearchPlan:
    limit = task.limit
    if limit is None or not float(limit).is_integer() or limit < 1:
        raise RecipeError(
            f"the gate evaluates {'every' if limit is None else 'a fraction of the'} "
            f"item(s) of {label!r}, so any search item overlaps the gate's items",
            where=loaded.where(loc),
            hint=f"set gates.tasks.{i}.limit to the number of items the gate reports "
            f"(items 0..limit-1) and search from that index on, or search another split "
            f"of the dataset ({{split: validation}})",
        )
    assert items.start is not None and items.count is not None
    if items.start < int(limit):
        raise RecipeError(
            f"search items {items.start}..{items.start + items.count - 1} of {label!r} "
            f"overlap the gate's items 0..{int(limit) - 1} (gates.tasks.{i}.limit: "
            f"{int(limit)}): tuning on the items the release reports would overstate it",
            where=loaded.where((*loc, "start")),
            hint=f"start the search at {int(limit)} or later",
        )
    indices = items.indices(None)
    text = f"items {indices[0]}–{indices[-1]}"
    return SearchPlan(label, "range", None, {d.leaf: indices for d in leaves}, text)


def _split_plan(
    loaded: LoadedRecipe,
    label: str,
    task: GateTask,
    items: SearchItems,
    leaves: list[LeafData],
    loc: tuple[Any, ...],
) -> SearchPlan:
    split = items.split
    assert split is not None
    where = loaded.where((*loc, "split"))
    out: dict[str, list[int]] = {}
    for d in leaves:
        if split == d.evaluated:
            raise RecipeError(
                f"sweep.search.{label}.split {split!r} is the split the gate evaluates "
                f"({d.leaf}): the search would tune on the items the release reports",
                where=where,
                hint="name another split of the dataset (e.g. validation), or search a range "
                "of the gate's split after its limit ({start: ..., count: ...})",
            )
        if d.splits is not None and split not in d.splits:
            raise RecipeError(
                f"task {label!r} ({d.leaf}) has no {split!r} split",
                where=where,
                hint=f"its splits: {', '.join(s for s in d.splits if s != d.evaluated)}"
                f" (the gate evaluates {d.evaluated!r})",
            )
        available = None
        if d.files:
            file = d.files.get(split)
            if file is None:
                raise RecipeError(
                    f"task {label!r} ({d.leaf}): no local {split!r} file beside "
                    f"{next(iter(d.files.values())).parent}",
                    where=where,
                    hint=f"put the split there as {split}.jsonl, or search another split",
                )
            _refuse_shared_records(label, d, file, task.limit, where)
            available = count_docs(file)
        elif items.count is None:
            raise RecipeError(
                f"task {label!r}: the {split!r} split is not a local file, so its size is unknown",
                where=where,
                hint="give `count` (items of each subtask), or put the data under gates.data_dir",
            )
        indices = items.indices(available)
        if available is not None and (not indices or indices[-1] >= available):
            raise RecipeError(
                f"task {label!r} ({d.leaf}): the {split!r} split has {available} item(s), "
                f"fewer than the {items.count or 'all'} asked for from {items.start or 0}",
                where=loaded.where(loc),
                hint=f"ask for at most {max(0, available - (items.start or 0))} item(s)",
            )
        out[d.leaf] = indices
    n = sum(len(v) for v in out.values())
    which = "all" if items.start is None and items.count is None else "the chosen"
    gate_split = leaves[0].evaluated
    text = f"{which} {n} items of the `{split}` split (the gate reports the `{gate_split}` split)"
    return SearchPlan(label, "split", split, out, text)


def _refuse_shared_records(
    label: str, d: LeafData, file: Path, limit: float | None, where: str | None
) -> None:
    """The searched split's file must not be, or share a record with, the gate's file."""
    gate_file = d.files.get(d.evaluated or "")
    if gate_file is None:
        return
    if file.resolve() == gate_file.resolve():
        raise RecipeError(
            f"task {label!r} ({d.leaf}): the search split and the gate's split are the same "
            f"file, {file}",
            where=where,
            hint="the search needs items the gate does not report: a separate file",
        )
    gate_rows = read_records(gate_file)
    if limit is not None and float(limit).is_integer():
        gate_rows = gate_rows[: int(limit)]  # the gate evaluates its first `limit` documents
    reported = {row: n for n, row in gate_rows}
    for line, row in read_records(file):
        if row in reported:
            raise RecipeError(
                f"task {label!r} ({d.leaf}): {file.name} line {line} is the same record as "
                f"{gate_file.name} line {reported[row]}, an item the gate reports",
                where=where,
                hint=f"remove the shared record(s) from {file} (or from the gate's file)",
            )
