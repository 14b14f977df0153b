"""Human-readable tables for a merge result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from medrelease.merge.step import MergeResult


def merge_table(result: MergeResult) -> Table:
    rec = result.record
    table = Table(
        title=f"merge ({rec.get('method')}, seed {rec.get('seed')})", title_justify="left"
    )
    table.add_column("stage")
    table.add_column("source")
    table.add_column("revision")
    table.add_column("files", justify="right")
    for name, st in (rec.get("stages") or {}).items():
        rev = st.get("revision") or (st.get("adapter") or {}).get("revision") or "-"
        table.add_row(
            name, f"{st['kind']}: {st['source']}", str(rev)[:12], str(len(st.get("files", {})))
        )
    checks = Table(title="verification", title_justify="left")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail")
    for name, c in (rec.get("verification") or {}).items():
        checks.add_row(name, "[green]pass[/green]" if c["ok"] else "[red]FAIL[/red]", c["detail"])
    outer = Table.grid(padding=(1, 0))
    outer.add_row(table)
    outer.add_row(checks)
    outer.add_row(f"merged model: {result.merged}\nmanifest:     {result.manifest}")
    return outer
