"""One module per CLI command; each exposes `register(app)`, `SUMMARY` (its line in
`medrelease --help`, never cut short) and `EXAMPLES` (command lines shown under "Examples:" in
its own help; tests/test_cli_help.py requires one or two).

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
    from typer.core import TyperCommand

    from medrelease.commands.helpfmt import HelpCommand

    for name in COMMANDS:
        module_name = f"medrelease.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        before = len(app.registered_commands)
        module.register(app)
        for info in app.registered_commands[before:]:
            if info.cls in (None, TyperCommand):  # typer fills in its own class
                info.cls = HelpCommand
            info.short_help = info.short_help or getattr(module, "SUMMARY", None)
            info.epilog = info.epilog or "\n".join(getattr(module, "EXAMPLES", ())) or None
