"""One spelling of an `lm_eval` command line, from a gate task's recorded settings.

The gate writes one per model and task into its report (`reproduce`: this machine's paths,
`--log_samples`); the card writes one per model and task for a reader (the published repo,
the repo's `eval/` folder). Both come from the same `tasks.<label>` entry of the report, so
the flags that decide the numbers (few-shot, limit, chat template, generation kwargs, batch
size, device) are spelled here only.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def task_flags(settings: Mapping[str, Any]) -> list[str]:
    """The flags of one task's settings (a report's `tasks.<label>`, records.gate_report)."""
    parts: list[str] = []
    if settings.get("num_fewshot") is not None:
        parts += ["--num_fewshot", str(settings["num_fewshot"])]
    if settings.get("limit") is not None:
        parts += ["--limit", str(settings["limit"])]
    if settings.get("samples"):  # a sweep hold-out's gate side: these documents of each task
        samples = json.dumps(settings["samples"], separators=(",", ":"))
        parts += ["--samples", shlex.quote(samples)]
    if settings.get("apply_chat_template"):
        parts.append("--apply_chat_template")
    if settings.get("gen_kwargs"):
        gen = settings["gen_kwargs"]
        parts += ["--gen_kwargs", ",".join(f"{k}={v}" for k, v in gen.items())]
    return parts


def lm_eval_command(
    *,
    backend: str,
    model_args: Iterable[tuple[str, Any]],
    task: str,
    settings: Mapping[str, Any],
    include_paths: Sequence[str] = (),
    batch_size: Any = None,
    device: str | None = None,
    log_samples: bool = False,
) -> str:
    """`lm_eval --model B --model_args k=v,... --tasks T [task flags] [--batch_size] [--device]`.

    `model_args`: (key, value) pairs in order, `pretrained` first; `batch_size`/`device`:
    left out when None/empty."""
    margs = ",".join(f"{k}={v}" for k, v in model_args)
    parts = ["lm_eval", "--model", backend, "--model_args", margs, "--tasks", task]
    for path in include_paths:
        parts += ["--include_path", path]
    parts += task_flags(settings)
    if batch_size is not None:
        parts += ["--batch_size", str(batch_size)]
    if device:
        parts += ["--device", device]
    if log_samples:
        parts.append("--log_samples")
    return " ".join(parts)
