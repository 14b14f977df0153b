"""Markdown clean-up shared by the rendered cards and their required sections."""

from __future__ import annotations


def tidy_markdown(text: str) -> str:
    """Collapse runs of blank lines that template conditionals leave and strip trailing
    spaces, outside code fences (code is kept byte for byte)."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(line.rstrip())
            continue
        if fenced:
            out.append(line)
            continue
        if not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line.rstrip())
    return "\n".join(out).strip() + "\n"
