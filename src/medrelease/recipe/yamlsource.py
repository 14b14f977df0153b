"""Load YAML while remembering where every key and item came from (file, line).

pydantic reports errors by location tuples (`("merge", "models", 0, "model")`); this module
maps those tuples back to the line a user has to edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medrelease.core.errors import RecipeError

Loc = tuple[str | int, ...]


@dataclass
class YamlSource:
    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line (1-based) of the deepest known prefix of `loc`."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def where(self, loc: Loc) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


@dataclass
class Places:
    """Where each value of the recipe as loaded came from: its recipe line, or the `--set`
    that replaced it (the recipe's lines below a replaced value no longer describe it)."""

    path: Path
    at: dict[Loc, str] = field(default_factory=dict)

    @classmethod
    def of(cls, source: YamlSource) -> Places:
        return cls(source.path, {loc: f"{source.path}:{n}" for loc, n in source.lines.items()})

    def replaced(self, loc: Loc, origin: str) -> None:
        n = len(loc)
        for old in [k for k in self.at if k[:n] == loc]:
            del self.at[old]
        self.at[loc] = origin

    def where(self, loc: Loc) -> str:
        for end in range(len(loc), -1, -1):
            found = self.at.get(tuple(loc[:end]))
            if found is not None:
                return found
        return str(self.path)


def decode_utf8(raw: bytes, path: Path) -> str:
    """The text of a YAML file, strictly UTF-8: a byte that is not would otherwise become
    U+FFFD in a name, a template or a card without anyone noticing."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.end].hex(" ")
        raise RecipeError(
            f"byte(s) {bad} at column {col} are not UTF-8 ({exc.reason})",
            where=f"{path}:{line}",
            hint="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or retype the "
            "character at that place",
        ) from None


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml(path: Path, text: str | None = None) -> YamlSource:
    if text is None:
        try:
            text = decode_utf8(path.read_bytes(), path)
        except FileNotFoundError:
            raise RecipeError(
                f"{path} does not exist",
                hint="check the path (recipes live in merges/; overlays where you named them)",
            ) from None
        except OSError as exc:
            raise RecipeError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="check the path and its permissions",
            ) from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise RecipeError(
            f"malformed YAML: {problem}",
            where=f"{path}{line}",
            hint="fix the YAML syntax (indentation, quotes, colons) at that line",
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(
            f"malformed YAML: {exc}", where=str(path), hint="fix the YAML syntax of the file"
        ) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlSource(path=path, data=data, lines=lines)
