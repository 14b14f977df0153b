"""Find, load and render card templates in a Jinja2 sandbox.

Templates are looked up in this order:

1. the folder of the recipe's own template (so it can `{% include %}` its siblings),
2. the shipped templates, `cards/` at the top of the repository (`medrelease/data/cards` is a
   link to it, which the wheel turns into a copy of the files); they are also reachable as
   `builtin/<name>`, so a recipe template called `model.md.j2` can still
   `{% extends "builtin/model.md.j2" %}`.

Block overrides from the recipe (`card.blocks`) become a chain of one-block child templates,
each named after its recipe key, so an error in one points at that key and a line in it.
Every error comes back as a `CardTemplateError` naming the template and the line.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from medrelease.card.errors import CardTemplateError
from medrelease.core.data import packaged
from medrelease.core.errors import RecipeError
from medrelease.core.hashing import sha256_bytes
from medrelease.recipe.loaded import LoadedRecipe

TEMPLATE_REF_RE = re.compile(r"""{%-?\s*(?:extends|include|import|from)\s+["']([^"']+)["']""")
# name of each card -> shipped template
SHIPPED = {"model": "model.md.j2", "gguf": "gguf.md.j2", "awq": "awq.md.j2"}


def shipped_dir() -> Path:
    """The shipped templates: `cards/`, via the package's `data/cards` link (copied in a wheel)."""
    return packaged("cards")


class _NamedLoader(jinja2.BaseLoader):
    """In-memory templates whose traceback 'filename' is a readable name (recipe key)."""

    def __init__(self, sources: Mapping[str, str]):
        self.sources = dict(sources)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        return self.sources[template], template, lambda: True


@dataclass
class CardRenderer:
    """A sandboxed environment plus the names of the templates it may render."""

    env: SandboxedEnvironment
    overrides: _NamedLoader

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            template = self.env.get_template(name)
            return template.render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise CardTemplateError(
                f"template syntax error: {exc.message}",
                where=f"{exc.filename or exc.name or name}:{exc.lineno}",
                hint="fix the Jinja syntax at that line (tags {% %}, expressions {{ }})",
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise CardTemplateError(
                f"template {exc.name!r} not found",
                where=_location(exc, name),
                hint=f"shipped templates: {', '.join(sorted(_shipped_names()))}; "
                "recipe templates are relative to the recipe file",
            ) from None
        except jinja2.exceptions.SecurityError as exc:
            raise CardTemplateError(
                f"template tried to reach outside the sandbox: {exc}",
                where=_location(exc, name),
                hint="card templates may only use the card variables and filters",
            ) from None
        except jinja2.UndefinedError as exc:
            raise CardTemplateError(
                f"undefined variable in template: {exc.message}",
                where=_location(exc, name),
                hint="see `medrelease card --variables` for what a card template can use",
            ) from None
        except jinja2.TemplateError as exc:
            raise CardTemplateError(
                f"template error: {exc.message or type(exc).__name__}",
                where=_location(exc, name),
            ) from None
        except (TypeError, ValueError, KeyError, ZeroDivisionError, AttributeError) as exc:
            raise CardTemplateError(
                f"template failed: {type(exc).__name__}: {exc}",
                where=_location(exc, name),
            ) from None

    def blocks_of(self, name: str) -> set[str]:
        """Every block a template defines, following its `{% extends %}` chain."""
        out: set[str] = set()
        seen: set[str] = set()
        todo = [name]
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            assert self.env.loader is not None
            try:
                source, _, _ = self.env.loader.get_source(self.env, cur)
                ast = self.env.parse(source, cur)
            except jinja2.TemplateNotFound:
                continue
            except jinja2.TemplateSyntaxError:
                continue  # reported with its line when rendered
            out |= {b.name for b in ast.find_all(nodes.Block)}
            for ext in ast.find_all(nodes.Extends):
                if isinstance(ext.template, nodes.Const) and isinstance(ext.template.value, str):
                    todo.append(ext.template.value)
        return out


def _shipped_names() -> list[str]:
    return sorted(p.name for p in shipped_dir().glob("*.j2"))


def _location(exc: BaseException, default: str) -> str:
    """template:line of the innermost template frame in the (Jinja-rewritten) traceback."""
    # Jinja rewrites tracebacks so template frames carry the template's file name and line;
    # every other frame is Python source.
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if not frame.filename.endswith(".py"):
            return f"{_short(frame.filename)}:{frame.lineno}"
    return default


def _short(filename: str) -> str:
    """Shipped templates are named by their package-relative name, not an absolute path."""
    p = Path(filename)
    if p.is_absolute():
        try:
            return f"builtin/{p.relative_to(shipped_dir()).as_posix()}"
        except ValueError:
            return str(p)
    return filename


def make_renderer(
    *,
    user_template: Path | None,
    filters: Mapping[str, Callable[..., Any]],
    block_sources: Mapping[str, str] | None = None,
) -> CardRenderer:
    """A sandbox that sees the user's template folder, the overrides and the shipped cards."""
    shipped = jinja2.FileSystemLoader(str(shipped_dir()))
    overrides = _NamedLoader(block_sources or {})
    loaders: list[jinja2.BaseLoader] = [overrides, jinja2.PrefixLoader({"builtin": shipped})]
    if user_template is not None:
        loaders.append(jinja2.FileSystemLoader(str(user_template.parent)))
    loaders.append(shipped)
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filters)
    return CardRenderer(env=env, overrides=overrides)


def chain_block_overrides(
    renderer: CardRenderer, main: str, blocks: Mapping[str, tuple[str, str]]
) -> str:
    """Add one child template per overridden block; return the name to render.

    `blocks` maps block name -> (where the recipe sets it, Jinja text). The child template is
    named `card.blocks.<block>` and the text starts on its first line, so an error's line
    counts from the start of the text.
    """
    known = renderer.blocks_of(main)
    parent = main
    for block, (recipe_where, text) in blocks.items():
        if block not in known:
            from medrelease.core.suggest import did_you_mean

            raise CardTemplateError(
                f"card.blocks.{block}: template {main} has no block {block!r}"
                + did_you_mean(block, known),
                where=recipe_where,
                hint=f"blocks you can replace: {', '.join(sorted(known))}",
            )
        name = f"card.blocks.{block}"
        renderer.overrides.sources[name] = (
            f'{{% extends "{parent}" %}}{{% block {block} %}}{text}{{% endblock %}}'
        )
        parent = name
    return parent


def template_path(loaded: LoadedRecipe, value: str | None, card: str) -> Path | None:
    """The recipe's own template for `card` (a path relative to the recipe), or None."""
    if value is None:
        return None
    key = "template" if card == "model" else f"{card}_template"
    p = Path(value).expanduser()
    p = p if p.is_absolute() else loaded.base_dir / p
    if not p.is_file():
        raise RecipeError(
            f"card.{key}: template file {p} does not exist",
            where=loaded.where(("card", key)),
            hint="paths are relative to the recipe file; omit the key to use the shipped template",
        )
    return p


def template_digest(renderer: CardRenderer, entry: str) -> str:
    """sha256 over the sources of every template the card can reach (for inputs_hash)."""
    env = renderer.env
    assert env.loader is not None
    sources: dict[str, str] = {}
    todo = [entry]
    for cur in todo:
        try:
            src, _, _ = env.loader.get_source(env, cur)
        except jinja2.TemplateNotFound:
            continue
        sources[cur] = src
        for ref in TEMPLATE_REF_RE.findall(src):
            if ref not in todo:
                todo.append(ref)
    return sha256_bytes(json.dumps(sources, sort_keys=True).encode())
