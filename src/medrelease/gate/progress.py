"""lm-eval's progress, shown on the unit's own row of our display (never as tqdm lines).

lm-eval draws several tqdm bars per model x task ("Building contexts", "Tokenizing inputs",
"Running loglikelihood requests", ...). Under a terminal each update would be a line of its
own in the middle of our rich output. For the duration of one unit, the modules that draw them
get a tqdm class that draws nothing (whatever TQDM_DISABLE says): the bars that run the model
("Running <type> requests") drive the unit's row (requests done / total, hence an ETA); the
others only count. Nothing in lm-eval is changed; the modules get their own tqdm back after.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from medrelease.core.rich_tqdm import counting_tqdm

# lm-eval modules that import `tqdm` by name (lm-eval 0.4), and ours that copies its loop
MODULES = (
    "lm_eval.api.model",
    "lm_eval.api.task",
    "lm_eval.models.huggingface",
    "lm_eval.models.vllm_causallms",
    "medrelease.gate.scored_lm",
)
# bars created inside functions (`from tqdm import tqdm` at call time, e.g. lm-eval's bootstrap)
TQDM_ATTRS = (("tqdm", "tqdm"), ("tqdm.auto", "tqdm"))

Advance = Callable[..., None]  # Reporter.phase's advance(n=1, *, total=None)


def is_model_bar(desc: str) -> bool:
    """The bars that count model calls: "Running loglikelihood requests", "Running
    generate_until requests", ... (the rest tokenize or build prompts: seconds)."""
    return desc.startswith("Running ") and desc.rstrip(": ").endswith("requests")


def unit_row(advance: Advance | None) -> Callable[[Any], None]:
    """on_change for counting_tqdm: the model bars' totals and counts add up on the row."""
    added: dict[int, int] = {}  # bar -> its count already on the row
    total = 0

    def on_change(bar: Any) -> None:
        nonlocal total
        if advance is None or not is_model_bar(str(bar.desc or "")):
            return
        if id(bar) not in added:
            added[id(bar)] = 0
            total += int(bar.total or 0)
            advance(0, total=total)
        delta = int(bar.count) - added[id(bar)]
        if delta > 0:
            added[id(bar)] += delta
            advance(delta)

    return on_change


@contextlib.contextmanager
def lm_eval_progress(advance: Advance | None) -> Iterator[None]:
    """lm-eval's bars, for the duration of one unit, drive `advance` (the unit's row), or
    nothing when it is None (a Ray worker: its driver shows the unit's row)."""
    import lm_eval.api.model
    import lm_eval.api.task  # noqa: F401 - imported so that their `tqdm` can be swapped

    cls = counting_tqdm(unit_row(advance))
    saved: list[tuple[Any, str, Any]] = []
    targets = [(sys.modules.get(m), "tqdm") for m in MODULES]
    for mod_name, attr in TQDM_ATTRS:
        with contextlib.suppress(ImportError):
            targets.append((importlib.import_module(mod_name), attr))
    for module, attr in targets:
        if module is not None and hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, cls)
    try:
        yield
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)
