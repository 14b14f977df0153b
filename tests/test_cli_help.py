"""Every command's help reads well: a summary never cut short, `RECIPE` in the usage, one or two
examples, and options that mean the same spelled and worded the same on every command."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import pytest

from medrelease.cli import app, main


def help_text(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--help"]) == 0
    return out.getvalue()


def commands() -> dict[str, Any]:
    import typer

    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


COMMANDS = sorted(commands())


def test_top_level_summaries_are_whole() -> None:
    text = help_text()
    listing = text[text.index("Commands:") :]
    assert "..." not in listing and "…" not in listing, listing
    for name, cmd in commands().items():
        summary = cmd.short_help
        assert summary and summary.endswith("."), f"{name}: no one-line SUMMARY"
        # one line beside the longest name (hub-server) in an 80-column terminal
        assert len(summary) <= 80 - 2 - 12 - 4, f"{name}: summary wraps at 80 columns"
        assert " ".join(summary.split()[:4]) in " ".join(listing.split()), name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_examples(name: str) -> None:
    text = help_text(name)
    assert "Examples:" in text, text
    examples = [line.strip() for line in text.split("Examples:", 1)[1].splitlines() if line.strip()]
    assert 1 <= len(examples) <= 2, examples
    assert all(f"medrelease {name}" in e for e in examples[:1]), examples
    for e in examples:  # printed as written: one command line per line, not re-wrapped prose
        assert e in "\n".join(commands()[name].epilog.splitlines()), e


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_names_recipe_without_braces(name: str) -> None:
    usage = help_text(name).splitlines()[0]
    assert "{" not in usage and "}" not in usage, usage
    if any(p.name == "recipe" for p in commands()[name].params):
        assert re.search(r"\bRECIPE\b", usage), usage


# Options whose meaning differs on purpose: `release --force` reruns every step (the others
# their own step); `demo --workdir` has its own default.
DIFFERENT = {("release", "--force"), ("demo", "--workdir")}


def test_shared_options_agree() -> None:
    seen: dict[str, tuple[str, tuple[str, ...], str | None, str]] = {}
    for name, cmd in commands().items():
        for p in cmd.params:
            if not p.opts or not p.opts[0].startswith("--") or (name, p.opts[0]) in DIFFERENT:
                continue
            key = p.opts[0]
            shape = (tuple(sorted(p.opts + p.secondary_opts)), p.metavar, p.help or "")
            if key in seen:
                assert shape == seen[key][1:], f"{key}: {name} differs from {seen[key][0]}"
            else:
                seen[key] = (name, *shape)
    wanted = {
        "--force": {"merge", "quantize", "release"},
        "--threads": {"quantize", "release"},
        "--allow-failed-gates": {"publish", "release"},
        "--target": {"publish", "release"},
        "--endpoint": {"publish", "release"},
        "--dry-run": {"publish", "release"},
    }
    for opt, names in wanted.items():
        has = {n for n, c in commands().items() if any(opt in p.opts for p in c.params)}
        assert names <= has, f"{opt} missing on {names - has}"
    target = next(p for p in commands()["release"].params if "--target" in p.opts)
    assert "-t" in target.opts


def test_readme_says_which_commands_take_workdir() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"Every command except (.+?) takes `--workdir DIR`", " ".join(readme.split()))
    assert found, "README must say which commands take --workdir"
    excepted = set(re.findall(r"`([a-z-]+)`", found.group(1)))
    lacking = {n for n, c in commands().items() if not any("--workdir" in p.opts for p in c.params)}
    # validate gains --workdir on the validate helper's branch (issue 20); the README says so
    assert lacking - {"validate"} == excepted, (lacking, excepted)
