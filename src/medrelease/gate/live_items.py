"""Each item's metric values while lm-eval is still running, so a sweep can prune a trial
inside one evaluation instead of cutting its items into separate runs.

lm-eval scores every item only after the model has answered all requests. Separate runs on
parts of the items would change how requests are batched (each part is sorted and padded on its
own), which costs time and, in bfloat16, moves near-tied answers. Here the one run goes on as
usual, and lm-eval's own code judges each item as soon as its last request is answered:

* every lm-eval backend reports each answer to its cache hook (`lm.cache_hook.add_partial`, what
  lm-eval's request cache uses); the watch adds itself to that hook;
* the request methods (`loglikelihood`, `generate_until`, `loglikelihood_rolling`) are wrapped to
  learn which instances (items) the answers belong to;
* `lm_eval.evaluator.evaluate` is wrapped to learn the task objects and the `samples` indices;
* an item whose requests are all answered is filtered with the task's filters and scored with
  the task's `process_results`, on copies of its instances (lm-eval fills the real ones after the
  run, as always), and handed to `on_item` in lm-eval's logged-sample form:
  `{"doc_id": <document index>, "filter": <filter>, "filtered_resps": [...], <metric>: <value>,
  ...}` (BOOKKEEPING names the keys that are not metrics).

`on_item` may raise (e.g. `StopEvaluation`) to end the run; the exception leaves lm-eval.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# (lm-eval leaf task name, its Task, the item's logged samples: one per filter)
OnItem = Callable[[str, Any, list[dict[str, Any]]], None]
REQUEST_TYPES = ("loglikelihood", "generate_until", "loglikelihood_rolling")
BOOKKEEPING = ("doc_id", "filter", "filtered_resps")


class StopEvaluation(Exception):
    """Raised by an `on_item` to end lm-eval's run early (a pruned sweep trial)."""


def _answer_key(attr: str, req: Any) -> tuple[Any, ...]:
    """What identifies a request in the cache hook's call: (context, continuation) for a
    log-likelihood; the context (or text) for generation and rolling log-likelihood."""
    req = tuple(req)
    return (attr, req[0], req[1]) if attr == "loglikelihood" else (attr, req[0])


class _Hook:
    """lm-eval's cache hook, observed: calls the one it replaces, then the watch."""

    def __init__(self, inner: Any, watch: ItemWatch):
        self.inner = inner
        self.watch = watch

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        if self.inner is not None:
            self.inner.add_partial(attr, req, res)
        self.watch.answered(attr, req, res)


class ItemWatch:
    def __init__(self, on_item: OnItem):
        self.on_item = on_item
        self.tasks: dict[str, Any] = {}  # lm-eval leaf task name -> Task
        self.samples: dict[str, list[int]] | None = None
        self.waiting: dict[tuple[Any, ...], list[Any]] = defaultdict(list)  # key -> instances
        self.answers: dict[int, list[Any]] = defaultdict(list)  # id(instance) -> answers
        self.missing: dict[tuple[str, int], int] = defaultdict(int)  # item -> answers to come
        self.items: dict[tuple[str, int], dict[int, Any]] = defaultdict(dict)  # item -> instances

    def requested(self, reqtype: str, instances: list[Any]) -> None:
        """lm-eval hands the model every request of a type at once (an instance `repeats` times)."""
        for inst in instances:
            if inst.task_name not in self.tasks:
                continue  # not a task of this run (cannot happen with lm-eval's evaluate)
            key = _answer_key(reqtype, inst.args)
            self.waiting[key].append(inst)
            item = (inst.task_name, inst.doc_id)
            self.missing[item] += 1
            self.items[item][id(inst)] = inst

    def answered(self, attr: str, req: Any, res: Any) -> None:
        queue = self.waiting.get(_answer_key(attr, req))
        if not queue:
            return  # e.g. a request of another run through the same model
        inst = queue.pop(0)  # equal requests get equal answers: any waiting one will do
        self.answers[id(inst)].append(res)
        item = (inst.task_name, inst.doc_id)
        self.missing[item] -= 1
        if self.missing[item] == 0:
            self._score(item)

    def _score(self, item: tuple[str, int]) -> None:
        name, position = item
        task = self.tasks[name]
        mine = sorted(self.items.pop(item).values(), key=lambda i: i.idx)
        copies = [
            dataclasses.replace(i, resps=list(self.answers.pop(id(i))), filtered_resps={})
            for i in mine
        ]
        for ensemble in task._filters:  # lm-eval's Task.apply_filters, on this item alone
            ensemble.apply(copies)
        indices = (self.samples or {}).get(name)
        doc_id = indices[position] if indices else position  # as lm-eval logs it
        out = []
        for filter_key in copies[0].filtered_resps:
            resps = [c.filtered_resps[filter_key] for c in copies]
            metrics = task.process_results(copies[0].doc, resps)
            out.append({"doc_id": doc_id, "filter": filter_key, "filtered_resps": resps, **metrics})
        self.on_item(name, task, out)


def _leaf_tasks(task_dict: Any) -> dict[str, Any]:
    import lm_eval.evaluator as ev

    if "tasks" in task_dict:
        return dict(task_dict.get("tasks") or {})
    return dict(ev._handle_back_comp(task_dict)[1])  # lm-eval's older nested form


@contextmanager
def watch_items(lm: Any, on_item: OnItem) -> Iterator[ItemWatch]:
    """Within: lm-eval runs on `lm` report each item to `on_item` as soon as it is scored."""
    import lm_eval.evaluator as ev

    watch = ItemWatch(on_item)
    evaluate = ev.evaluate

    def watched_evaluate(*args: Any, **kwargs: Any) -> Any:
        watch.tasks.update(_leaf_tasks(kwargs["task_dict"]))
        watch.samples = kwargs.get("samples")
        return evaluate(*args, **kwargs)

    def wrap(reqtype: str) -> Callable[..., Any]:
        method = getattr(lm, reqtype)

        def watched(requests: list[Any], *args: Any, **kwargs: Any) -> Any:
            watch.requested(reqtype, requests)
            return method(requests, *args, **kwargs)

        return watched

    hook = lm.cache_hook
    lm.cache_hook = _Hook(hook, watch)
    for reqtype in REQUEST_TYPES:
        setattr(lm, reqtype, wrap(reqtype))  # on the instance: lm-eval calls getattr(lm, ...)
    ev.evaluate = watched_evaluate
    try:
        yield watch
    finally:
        ev.evaluate = evaluate
        for reqtype in REQUEST_TYPES:
            vars(lm).pop(reqtype, None)
        lm.cache_hook = hook
