"""How a command's help reads: its usage names `RECIPE` (typer writes `{RECIPE}` for a
required argument), and its examples are printed under "Examples:" exactly as written, one
command line per line (click would re-wrap them as prose)."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class HelpCommand(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [
            p[1:-1] if p.startswith("{") and p.endswith("}") else p
            for p in super().collect_usage_pieces(ctx)
        ]

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if not self.epilog:
            return
        with formatter.section("Examples"):
            for line in self.epilog.splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
