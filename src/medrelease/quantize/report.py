"""The quantize result as a table: one row per quant, with why a rejected one was kept out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from medrelease.records.quantize import ImatrixRecord, QuantCheck, QuantEntry


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _check_cell(check: QuantCheck | None) -> str:
    if check is None:
        return "-"
    mark = "[green]ok[/green]" if check.get("ok") else "[red]FAIL[/red]"
    if "warning" in check and check.get("ok"):
        mark = "[yellow]ok*[/yellow]"
    return mark


def _logits_cell(check: QuantCheck | None) -> str:
    if check is None:
        return "-"
    m = check.get("measures", {})
    limit = check.get("limits", {}).get("max_ppl_ratio")
    text = f"{m.get('ppl_ratio', float('nan')):.4f}" + (f" (≤ {limit:g})" if limit else "")
    return (
        ("[green]" if check.get("ok") else "[red]")
        + text
        + ("[/green]" if check.get("ok") else "[/red]")
    )


def quant_table(record: Mapping[str, Any]) -> Table:
    """`record`: the step's record just made (records/quantize.py `QuantizeRecord`)."""
    table = Table(title="quantize", title_justify="left")
    for col in (
        "family",
        "type",
        "size",
        "files",
        "tokens",
        "ppl ratio",
        "top-1",
        "accepted",
        "note",
    ):
        table.add_column(col, justify="right" if col in ("size", "files") else "left")
    quants: list[QuantEntry] = record.get("quants", [])
    for q in quants:
        checks = q.get("checks") or {}
        logits = checks.get("logits")
        top1 = logits.get("measures", {}).get("top1_agreement") if logits else None
        notes = list(q.get("notes", []))
        if "warning" in (checks.get("tokenization") or {}):
            notes.append("tokens ok*: see the space-prefix warning")
        note = q.get("reason") or "; ".join(notes)
        table.add_row(
            q["family"],
            q["type"],
            human_size(q.get("size", 0)),
            str(len(q.get("files") or {})),
            _check_cell(checks.get("tokenization") or checks.get("load")),
            _logits_cell(logits),
            "-" if top1 is None else f"{top1:.3f}",
            "[green]yes[/green]" if q["accepted"] else "[red]no[/red]",
            note,
        )
    imatrix: ImatrixRecord | None = record.get("imatrix")
    if imatrix:  # which text steered the gguf quants, and where the matrix is
        table.caption = (
            f"gguf importance matrix: {imatrix['file']} (calibration {imatrix['calibration']}, "
            f"{imatrix['chunks']} chunks of {imatrix['context']} tokens)"
        )
        table.caption_justify = "left"
    return table
