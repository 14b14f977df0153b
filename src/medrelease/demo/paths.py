"""Where the demo's shipped files live (inside the installed package)."""

from __future__ import annotations

from pathlib import Path

DEMO_DATA = Path(__file__).resolve().parent.parent / "data" / "demo"
TASKS_DIR = DEMO_DATA / "tasks"
RECIPE_TEMPLATE = DEMO_DATA / "recipe.yaml"
HELDOUT_TEXT = DEMO_DATA / "heldout.txt"
TASK_NAMES = ("demo_mcq", "demo_format")
