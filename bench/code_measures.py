"""The code measures the design notes report, for src/medrelease: import circles, the longest
function, and the count of `dict[str, Any]`.

    python bench/code_measures.py [SRC]        # SRC: the folder holding medrelease/ (src)

Import circles are the strongly connected components of the module graph, counted twice: with
the imports a module runs when it is imported (module level, `if TYPE_CHECKING:` left out), and
with function-level imports too (a lazy import can hide a circle). `from pkg import name`
points at pkg.name when that is a module, else at pkg. Repeated blocks are the `duplicates`
tool's (`duplicates --repo src`), not measured here.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "medrelease").rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, package: str, mods: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in mods:  # `medrelease.x.Thing` -> the module medrelease.x
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            out += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_level(node.body) + _module_level(node.orelse)
            for handler in node.handlers:
                out += _module_level(handler.body)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main(src: Path) -> None:
    mods = modules(src)
    top: dict[str, set[str]] = {}
    every: dict[str, set[str]] = {}
    longest = (0, "")
    dict_any = 0
    for name, path in mods.items():
        text = path.read_text()
        dict_any += len(re.findall(r"dict\[str, Any\]", text))
        tree = ast.parse(text)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top[name] = set().union(*(_targets(n, package, mods) for n in _module_level(tree.body)))
        every[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                every[name] |= _targets(node, package, mods)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > longest[0]:
                    where = f"{path.relative_to(src)}:{node.lineno} {node.name}"
                    longest = (lines, where)
        top[name].discard(name)
        every[name].discard(name)
    for label, graph in (("module level", top), ("with function-level imports", every)):
        found = circles(graph)
        print(f"import circles, {label}: {len(found)}")
        for component in found:
            print(f"  {' <-> '.join(component)}")
    print(f"longest function: {longest[0]} lines ({longest[1]})")
    print(f"dict[str, Any] in src: {dict_any}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "src"))
