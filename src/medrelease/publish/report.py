"""Rich tables for `medrelease publish`: the plan (dry run) and what happened per repo."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from medrelease.core.step import StepResult
from medrelease.records.manifest import PublishRecord


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def plan_table(result: StepResult[PublishRecord]) -> Table:
    rec = result.record
    table = Table(title="publish plan (dry run: nothing written)", title_justify="left")
    table.add_column("repo / file", no_wrap=True)
    table.add_column("size", justify="right")
    table.add_column("status")
    for repo in rec["plan"]:
        tag = repo["tag"] or "none (review: pull request)"
        head = f"[bold]{repo['repo']}[/bold] [dim]({repo['role']}, tag {tag})[/dim]"
        table.add_section()
        table.add_row(head, human_size(repo["size"]), str(repo.get("remote", "")))
        for f in repo["files"]:
            table.add_row(f"  {f['path']}", human_size(f.get("size")), f["status"])
    return table


def outcome_table(result: StepResult[PublishRecord]) -> Table:
    rec = result.record
    title = f"published to {rec['target'].get('endpoint') or rec['target'].get('path')}"
    table = Table(title=title, title_justify="left")
    for col in ("repo", "status", "commit / PR", "tag", "files", "new", "changed", "deleted"):
        table.add_column(col)
    for r in rec["repos"]:
        where = r.get("pr_url") or (r.get("commit") or "")[:12]
        counts = [str(len(r.get("added", []))), str(len(r.get("changed", [])))]
        counts.append(str(len(r.get("deleted", []))))
        table.add_row(r["repo"], r["status"], where, r.get("tag") or "", str(r["files"]), *counts)
    return table


def card_diffs(result: StepResult[PublishRecord]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for repo in result.record.get("plan", []):
        diff: Any = repo.get("card_diff")
        if diff:
            out.append((repo["repo"], diff))
    return out
