"""Read the evidence a card is built from: `manifest.json` and `gates/report.json` only.

Both are checked against their typed definitions (`medrelease.records`) before any template
sees them, so a template error always means a template problem, never a truncated report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.card.model_facts import ModelFacts, model_facts
from medrelease.card.prompt_format import special_tokens
from medrelease.card.sweep_section import read_sweep_report
from medrelease.core.errors import InputError
from medrelease.core.hashing import sha256_file_uncached
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.records.gate_report import GateReport, read_gate_report
from medrelease.records.manifest import MergeRecord, read_step
from medrelease.records.quantize import QuantEntry, QuantizeRecord


@dataclass
class Evidence:
    manifest: Manifest
    merge: MergeRecord
    report: GateReport
    report_sha256: str
    quantize: QuantizeRecord | None
    # where the merged model's chat template ships: a file name, None when it has none, or
    # "unknown" when merged/ is not on disk (only the manifest's file list can tell then)
    chat_template_in: str | None = "unknown"
    # the merged model's chat template text when merged/ is on disk (None: none, or unknown)
    chat_template: str | None = None
    facts: ModelFacts | None = None
    # bos_token / eos_token of the merged tokenizer (for the prompt format example)
    special_tokens: dict[str, str] = field(default_factory=dict)
    # the merged model's folder when it is on disk (its tokenizer names probe tokens)
    merged_dir: Path | None = None
    sweep: dict[str, Any] | None = None  # sweep/report.json when the merge was searched

    @property
    def quants(self) -> list[QuantEntry]:
        return list(self.quantize["quants"]) if self.quantize else []


def load_evidence(paths: ReleasePaths) -> Evidence:
    manifest = Manifest.load(paths.root)
    merge = read_step(manifest, "merge", MergeRecord)
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
    report = read_gate_report(report_path)
    quantize = read_step(manifest, "quantize", QuantizeRecord)
    if quantize is not None and quantize.get("status") != "done":
        quantize = None
    return Evidence(
        manifest=manifest,
        merge=merge,
        report=report,
        report_sha256=sha256_file_uncached(report_path),
        quantize=quantize,
        chat_template_in=chat_template_location(paths.merged),
        chat_template=chat_template_text(paths.merged),
        facts=model_facts(paths.merged, merge),
        special_tokens=special_tokens(_tokenizer_config(paths.merged)),
        merged_dir=paths.merged if paths.merged.is_dir() else None,
        sweep=read_sweep_report(paths.sweep_report),
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


def _tokenizer_config(merged: Path) -> dict[str, Any]:
    try:
        data = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template_text(merged: Path) -> str | None:
    """The merged model's chat template as it ships (the prompt format a card shows)."""
    where = chat_template_location(merged)
    try:
        if where == "chat_template.jinja":
            return (merged / where).read_text(encoding="utf-8")
        if where == "tokenizer_config.json":
            value = json.loads((merged / where).read_text(encoding="utf-8")).get("chat_template")
            return value if isinstance(value, str) else None
    except (OSError, ValueError):
        return None
    return None
