"""Jinja filters for cards: one rounding rule for every number a card shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MISSING = "–"


def card_filters(decimals: int) -> dict[str, Callable[..., Any]]:
    def num(value: Any) -> str:
        if value is None:
            return MISSING
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return f"{value:.{decimals}f}"

    def delta(value: Any) -> str:
        if value is None:
            return MISSING
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        text = f"{value:+.{decimals}f}"
        # -0.0000 and +0.0000 both mean "no change"
        return text if float(text) != 0 else f"{0:.{decimals}f}"

    return {
        "num": num,
        "delta": delta,
        "opt": optional,
        "human_bytes": human_bytes,
        "short_sha": short_sha,
        "params": params,
        "percent": percent,
    }


def optional(value: Any, missing: str = MISSING) -> str:
    """A setting as written (e.g. an int from the report), or `missing` when it is null."""
    return missing if value is None else str(value)


def human_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return MISSING
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def short_sha(value: Any, length: int = 12) -> str:
    return str(value)[:length] if value else MISSING


def params(n: Any) -> str:
    """A parameter count as model names state it: 1.4M, 135M, 4.0B."""
    if not isinstance(n, int) or isinstance(n, bool):
        return MISSING
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def percent(value: Any) -> str:
    """A rate in [0, 1] as a percentage with one decimal (top-1 agreement)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return MISSING
    return f"{100 * value:.1f}%"
