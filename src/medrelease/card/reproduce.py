"""The card's `lm_eval` commands: the gate's settings, with nothing of this machine in them.

Built from the gate report's structured fields (models, tasks, harness), not by editing the
gate's own command lines: the candidate is the published repo at the release tag, a Hub stage
is its id at the recorded commit, a local stage is its published repo (`card.stage_repos`) or
a named placeholder, and task files come from the repo's `eval/` folder (eval_bundle.py).
The flags are spelled once, in records/lm_eval_command.py, for these and the gate's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from medrelease.card.eval_bundle import EVAL_DIR, EvalBundle
from medrelease.card.names import release_tag, stage_hub_id
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.stages import HubStage
from medrelease.records.gate_report import GateReport
from medrelease.records.lm_eval_command import lm_eval_command


@dataclass
class ModelRef:
    name: str
    pretrained: str  # a Hub id, or `<name>` for a stage that exists only on this machine
    revision: str | None
    published: bool


def model_refs(loaded: LoadedRecipe, report: GateReport) -> list[ModelRef]:
    """Every model the gate evaluated, candidate first, as a reader can load it."""
    cand = report["candidate"]
    out = [ModelRef(cand, loaded.recipe.release.repo, release_tag(loaded), True)]
    for name, rec in report["models"].items():
        if name == cand:
            continue
        spec = loaded.recipe.stages.get(name)
        hub = stage_hub_id(loaded, name) if spec is not None else None
        if hub:
            # the recorded commit belongs to the stage's own Hub repo, not to a stage_repos id
            pinned = isinstance(spec, HubStage) and spec.hub == hub
            out.append(ModelRef(name, hub, rec.get("revision") if pinned else None, True))
        else:
            out.append(ModelRef(name, f"<{name}>", None, False))
    return out


def _dtype_of(value: Any) -> str | None:
    if isinstance(value, dict):  # {"dtype": ..., "reason": ...} as the gate records it
        value = value.get("dtype")
    return str(value) if value else None


def eval_dtype(report: Mapping[str, Any], model: str | None = None) -> str | None:
    """The dtype the gate evaluated in, when the report records one (absent in older reports).

    Looked up per model (`models.<name>.dtype`), then for the run (`harness.dtype`, which the
    gate writes as `{dtype, reason}`, or `settings.dtype`), then in the recipe's model_args.
    `auto` means each checkpoint's own dtype. (Any report shape: older ones differ here.)
    """
    rec = (report.get("models") or {}).get(model) or {} if model else {}
    harness = report.get("harness") or {}
    for where in (rec, harness, report.get("settings")):
        if isinstance(where, dict) and (found := _dtype_of(where.get("dtype"))):
            return found
    margs = harness.get("model_args") or {}
    return _dtype_of(margs.get("dtype")) if isinstance(margs, dict) else None


def _model_args(ref: ModelRef, report: GateReport) -> list[tuple[str, Any]]:
    harness = report.get("harness") or {}
    extra = dict(harness.get("model_args") or {})
    dtype = eval_dtype(report, ref.name)
    if dtype and dtype != "auto":  # auto is lm-eval's default: each checkpoint's own dtype
        extra["dtype"] = dtype
    pairs: list[tuple[str, Any]] = [("pretrained", ref.pretrained)]
    if ref.revision:
        pairs.append(("revision", ref.revision))
    return pairs + [(k, v) for k, v in extra.items() if k not in ("pretrained", "revision")]


def command(ref: ModelRef, label: str, report: GateReport, bundle: EvalBundle) -> str:
    harness = report.get("harness") or {}
    settings = report["tasks"][label]
    task = bundle.tasks[label]
    return lm_eval_command(
        backend=str(harness.get("backend") or "hf"),
        model_args=_model_args(ref, report),
        task=task.lm_task,
        settings=settings,
        include_paths=[f"{EVAL_DIR}/"] if task.include else [],
        batch_size=settings.get("batch_size") or harness.get("batch_size"),
        device=str(harness["device"]) if harness.get("device") else None,
    )


class RerunCommand(TypedDict):
    model: str
    task: str
    command: str


class Rerun(TypedDict):
    commands: list[RerunCommand]
    local_only: list[str]  # stages only the publisher has, shown as `<name>`
    uses_eval_dir: bool
    tag: str


def reproduce(loaded: LoadedRecipe, report: GateReport, bundle: EvalBundle) -> Rerun:
    """Commands per model and task, and what a reader must know to run them."""
    refs = model_refs(loaded, report)
    commands = [
        RerunCommand(model=ref.name, task=label, command=command(ref, label, report, bundle))
        for label in report["tasks"]
        for ref in refs
    ]
    return Rerun(
        commands=commands,
        local_only=[r.name for r in refs if not r.published],
        uses_eval_dir=any(t.include for t in bundle.tasks.values()),
        tag=release_tag(loaded),
    )
