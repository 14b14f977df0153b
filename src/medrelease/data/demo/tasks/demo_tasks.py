"""Data loaders and the format metric of the demo's lm-eval tasks (loaded by lm-eval by path).

The jsonl files sit next to this file, so the tasks work from any working directory
(lm-eval's `dataset_kwargs.data_files` would be relative to the current directory).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BRACKETED = re.compile(r"\[([^\[\]\n]+)\]")


def _load(name: str) -> Any:
    import datasets

    rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_mcq(**_: Any) -> Any:
    return _load("demo_mcq.jsonl")


def load_format(**_: Any) -> Any:
    return _load("demo_format.jsonl")


def process_format(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """format_acc: the reply (first line, stripped) is exactly one bracketed answer.

    Only the format is scored: which answer is inside is the MCQ task's business.
    """
    reply = results[0].strip()
    return {"format_acc": float(BRACKETED.fullmatch(reply) is not None)}
