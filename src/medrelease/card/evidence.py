"""Read the evidence a card is built from: `manifest.json` and `gates/report.json` only.

Both are checked against the shapes fixed in docs/CONTRACTS.md before any template sees them,
so a template error always means a template problem, never a truncated report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.core.errors import InputError
from medrelease.core.hashing import sha256_file_uncached
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths

REPORT_SCHEMA = 1


@dataclass
class Evidence:
    manifest: Manifest
    merge: dict[str, Any]
    report: dict[str, Any]
    report_sha256: str
    quantize: dict[str, Any] | None
    # where the merged model's chat template ships: a file name, None when it has none, or
    # "unknown" when merged/ is not on disk (only the manifest's file list can tell then)
    chat_template_in: str | None = "unknown"

    @property
    def quants(self) -> list[dict[str, Any]]:
        return list((self.quantize or {}).get("quants") or [])


def load_evidence(paths: ReleasePaths) -> Evidence:
    manifest = Manifest.load(paths.root)
    merge = manifest.step("merge")
    if not merge or merge.get("status") != "done":
        raise InputError(
            f"{paths.manifest} has no finished merge step",
            hint="run `medrelease merge RECIPE` (and `gate`) before `card`",
        )
    report_path = paths.gate_report
    if not report_path.is_file():
        raise InputError(
            f"gate report {report_path} does not exist",
            hint="run `medrelease gate RECIPE` first: every number in a card comes from it",
        )
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{report_path} is not valid JSON ({exc})", hint="re-run `medrelease gate RECIPE`"
        ) from None
    check_report(report, report_path)
    quantize = manifest.step("quantize")
    if quantize is not None and quantize.get("status") != "done":
        quantize = None
    return Evidence(
        manifest=manifest,
        merge=merge,
        report=report,
        report_sha256=sha256_file_uncached(report_path),
        quantize=quantize,
        chat_template_in=chat_template_location(paths.merged),
    )


def chat_template_location(merged: Path) -> str | None:
    """The file of the merged model that carries its chat template (transformers 5 writes
    `chat_template.jinja`; older tokenizers keep it in tokenizer_config.json), or None."""
    if not merged.is_dir():
        return "unknown"
    if (merged / "chat_template.jinja").is_file():
        return "chat_template.jinja"
    try:
        config = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "tokenizer_config.json" if config.get("chat_template") else None


def check_report(report: Any, where: Path) -> None:
    """The fields the card reads, with the types it relies on (CONTRACTS.md)."""

    def bad(what: str) -> InputError:
        return InputError(
            f"gate report is malformed: {what}",
            where=str(where),
            hint="re-run `medrelease gate RECIPE` (the report format is in docs/CONTRACTS.md)",
        )

    if not isinstance(report, dict):
        raise bad("top level is not an object")
    if report.get("schema_version") != REPORT_SCHEMA:
        raise bad(f"schema_version {report.get('schema_version')!r}, expected {REPORT_SCHEMA}")
    for key, typ in (("models", dict), ("metrics", list), ("rules", list), ("tasks", dict)):
        if not isinstance(report.get(key), typ):
            raise bad(f"'{key}' missing or not a {typ.__name__}")
    candidate = report.get("candidate")
    if candidate not in report["models"]:
        raise bad(f"candidate {candidate!r} is not one of the models")
    for i, m in enumerate(report["metrics"]):
        if not isinstance(m, dict) or not isinstance(m.get("metric"), str):
            raise bad(f"metrics[{i}] has no 'metric' name")
        values = m.get("values")
        if not isinstance(values, dict) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in values.values()
        ):
            raise bad(f"metrics[{i}] ({m['metric']}): 'values' must map model -> number or null")
        unknown = set(values) - set(report["models"])
        if unknown:
            raise bad(f"metrics[{i}] ({m['metric']}): values for unknown models {sorted(unknown)}")
    for i, r in enumerate(report["rules"]):
        if not isinstance(r, dict) or "passed" not in r or "text" not in r:
            raise bad(f"rules[{i}] needs 'text' and 'passed'")
