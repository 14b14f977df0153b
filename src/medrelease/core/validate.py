"""Check a record read from disk against the TypedDict its writer is typed with.

Generic, so that core can validate too: the runner checks a step's previous record before
its skip check (core/runner.py `StepRun.previous`) with the type the step passes in, since
core cannot import the record types (`medrelease.records`, a layer above).
Validation is strict (no coercion: "0.5" is not a number, true is not 1) and only checks:
the reader keeps the very object it loaded, unknown keys included, so a record written by a
newer version with more keys still reads, and nothing is converted behind the reader's back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from medrelease.core.errors import InputError

SHOWN = 5  # problems spelled out in one message; the rest are counted


@functools.cache
def _adapter(kind: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(kind)


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


def _rule(loc: Sequence[int | str], messages: Mapping[str, str]) -> str | None:
    """The sentence `messages` gives for the innermost field of `loc` it names.

    Keys are dotted field paths with `*` for a list index: `metrics.*.values`."""
    for n in range(len(loc), 0, -1):
        key = ".".join("*" if isinstance(p, int) else str(p) for p in loc[:n])
        if key in messages:
            return messages[key]
    return None


def record_problems(
    kind: Any, data: Any, *, messages: Mapping[str, str] | None = None, prefix: str = ""
) -> list[str]:
    """Every way `data` differs from the type `kind`, one line each ([] when it conforms)."""
    from pydantic import ValidationError

    try:
        _adapter(kind).validate_python(data, strict=True)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors(include_url=False):
            loc = err["loc"]
            if err["type"] == "missing":
                text = "missing"
            else:
                got = repr(err.get("input"))
                got = got if len(got) <= 40 else got[:37] + "..."
                msg = err["msg"][:1].lower() + err["msg"][1:]
                text = f"{_rule(loc, messages or {}) or msg} (got {got})"
            at = f"{prefix}.{_path(loc)}" if prefix and loc else (prefix or _path(loc))
            line = f"{at}: {text}"
            if line not in problems:
                problems.append(line)
        return problems
    return []


def check_record(
    kind: Any,
    data: Any,
    *,
    what: str,
    where: str,
    hint: str,
    messages: Mapping[str, str] | None = None,
    prefix: str = "",
) -> None:
    """Raise one InputError listing how `data` (read from `where`) is not a `kind`."""
    problems = record_problems(kind, data, messages=messages, prefix=prefix)
    if problems:
        more = len(problems) - SHOWN
        shown = "; ".join(problems[:SHOWN]) + (f" (+{more} more)" if more > 0 else "")
        raise InputError(f"{what} is malformed: {shown}", where=where, hint=hint)
