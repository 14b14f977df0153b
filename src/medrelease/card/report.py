"""What `medrelease card` prints: a table of the written cards, then any diffs."""

from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax
from rich.table import Table

from medrelease.card.diff import CardDiff, diff_published
from medrelease.core.console import out_console
from medrelease.core.paths import ReleasePaths
from medrelease.core.step import StepResult
from medrelease.recipe.loaded import LoadedRecipe


def card_table(result: StepResult) -> Table:
    rec = result.record
    table = Table(title="cards", title_justify="left")
    table.add_column("card")
    table.add_column("file")
    table.add_column("base_model")
    table.add_column("relation")
    table.add_column("eval results", justify="right")
    for name, path in (rec.get("cards") or {}).items():
        meta = (rec.get("metadata") or {}).get(name) or {}
        results = sum(len(r.get("results", [])) for r in meta.get("model-index") or [])
        bm = meta.get("base_model") or []
        table.add_row(
            name,
            path,
            ", ".join(bm if isinstance(bm, list) else [bm]),
            str(meta.get("base_model_relation") or "-"),
            str(results),
        )
    return table


def license_table(result: StepResult) -> Table:
    lic = result.record.get("licenses") or {}
    table = Table(title=f"licenses (release: {lic.get('release')})", title_justify="left")
    table.add_column("parent")
    table.add_column("license")
    table.add_column("stated in")
    table.add_column("ok")
    for p in lic.get("parents") or []:
        ok = "[green]yes[/green]" if p["compatible"] else "[yellow]override[/yellow]"
        table.add_row(p["stage"], p["license"] or "not stated", p["source"], ok)
    return table


def diff_rendered(
    loaded: LoadedRecipe, *, workdir: Path, against: Path | None = None
) -> list[CardDiff]:
    """Compare the cards just written in card/ with the published ones."""
    from medrelease.card.names import repo_ids
    from medrelease.card.step import CARD_FILES

    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    rendered = {
        name: (paths.card / rel).read_text(encoding="utf-8")
        for name, rel in CARD_FILES.items()
        if (paths.card / rel).is_file()
    }
    return diff_published(rendered, repo_ids(loaded), against=against)


def print_card_result(result: StepResult, diffs: list[CardDiff] | None) -> None:
    out_console.print(card_table(result))
    out_console.print(license_table(result))
    if result.record.get("chart"):
        out_console.print(f"chart: {result.record['chart']}")
    for d in diffs or []:
        if d.status == "unchanged":
            out_console.print(f"{d.card} card: unchanged against {d.against}")
            continue
        label = "new (nothing published yet)" if d.status == "new" else "changed"
        out_console.print(f"{d.card} card: {label} against {d.against}")
        out_console.print(Syntax(d.diff, "diff", theme="ansi_dark", word_wrap=True))
