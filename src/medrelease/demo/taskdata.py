"""Write the demo's lm-eval task data (jsonl) from `medrelease.demo.facts`.

The files are committed under data/demo/tasks/; a test checks they equal this output, so
the evaluation items can always be traced to the generator. Regenerate with
`python -m medrelease.demo.taskdata`.
"""

from __future__ import annotations

import json
from pathlib import Path

from medrelease.core.atomic import atomic_write_text
from medrelease.demo import facts
from medrelease.demo.paths import HELDOUT_TEXT, TASKS_DIR


def task_files() -> dict[str, str]:
    """File name -> exact jsonl text."""

    def jsonl(rows: list[dict[str, object]]) -> str:
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)

    return {
        "demo_mcq.jsonl": jsonl(facts.mcq_items()),
        "demo_format.jsonl": jsonl(facts.format_items()),
    }


def heldout_text() -> str:
    """In-domain text for the quantize step's logits check (quantize.checks.heldout):
    every fact answered plainly, then every format item answered in brackets."""
    lines = [f"{facts.qa_prompt(f)} {f.answer}" for f in facts.FACTS]
    lines += [f"{facts.format_prompt(f)} [{f.answer}]" for f in facts.FORMAT_EVAL_FACTS]
    return "\n".join(lines) + "\n"


def write_task_data(folder: Path = TASKS_DIR) -> list[Path]:
    written = []
    for name, text in task_files().items():
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    atomic_write_text(HELDOUT_TEXT, heldout_text())
    written.append(HELDOUT_TEXT)
    return written


if __name__ == "__main__":
    for path in write_task_data():
        print(path)
