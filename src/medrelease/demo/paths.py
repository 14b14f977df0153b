"""Where the demo's shipped files live (inside the installed package)."""

from __future__ import annotations

from medrelease.core.data import packaged

DEMO_DATA = packaged("demo")
TASKS_DIR = DEMO_DATA / "tasks"
RECIPE_TEMPLATE = DEMO_DATA / "recipe.yaml"
HELDOUT_TEXT = DEMO_DATA / "heldout.txt"
TASK_NAMES = ("demo_mcq", "demo_format")
