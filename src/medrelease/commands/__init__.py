"""One module per CLI command; each exposes `register(app)`.

Commands import their step inside the command function, so `medrelease --help` stays fast
and never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

# Order is the order shown in `medrelease --help`.
COMMANDS = (
    "setup",
    "validate",
    "merge",
    "gate",
    "quantize",
    "card",
    "publish",
    "release",
    "sweep",
    "status",
    "demo",
    "hub_server",
)


def register_all(app: typer.Typer) -> None:
    for name in COMMANDS:
        module_name = f"medrelease.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)
