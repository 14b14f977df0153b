"""The card's `lm_eval` commands: the gate's settings, with nothing of this machine in them.

Built from the gate report's structured fields (models, tasks, harness), not by editing the
gate's own command lines: the candidate is the published repo at the release tag, a Hub stage
is its id at the recorded commit, a local stage is its published repo (`card.stage_repos`) or
a named placeholder, and task files come from the repo's `eval/` folder (eval_bundle.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medrelease.card.eval_bundle import EVAL_DIR, EvalBundle
from medrelease.recipe.load import LoadedRecipe
from medrelease.recipe.stages import HubStage


@dataclass
class ModelRef:
    name: str
    pretrained: str  # a Hub id, or `<name>` for a stage that exists only on this machine
    revision: str | None
    published: bool


def release_tag(loaded: LoadedRecipe) -> str:
    rel = loaded.recipe.release
    pattern = str(getattr(loaded.recipe.publish, "tag", None) or "v{version}")
    return pattern.format(repo=rel.repo, name=rel.name, version=rel.version)


def model_refs(loaded: LoadedRecipe, report: dict[str, Any]) -> list[ModelRef]:
    """Every model the gate evaluated, candidate first, as a reader can load it."""
    from medrelease.card.context import stage_hub_id

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


def eval_dtype(report: dict[str, Any], model: str | None = None) -> str | None:
    """The dtype the gate evaluated in, when the report records one (absent in older reports).

    Looked up per model (`models.<name>.dtype`), then for the run (`harness.dtype`, which the
    gate writes as `{dtype, reason}`, or `settings.dtype`), then in the recipe's model_args.
    `auto` means each checkpoint's own dtype.
    """
    rec = (report.get("models") or {}).get(model) or {} if model else {}
    harness = report.get("harness") or {}
    for where in (rec, harness, report.get("settings")):
        if isinstance(where, dict) and (found := _dtype_of(where.get("dtype"))):
            return found
    margs = harness.get("model_args") or {}
    return _dtype_of(margs.get("dtype")) if isinstance(margs, dict) else None


def dtype_reason(report: dict[str, Any]) -> str | None:
    value = (report.get("harness") or {}).get("dtype")
    return str(value["reason"]) if isinstance(value, dict) and value.get("reason") else None


def _model_args(ref: ModelRef, report: dict[str, Any]) -> str:
    harness = report.get("harness") or {}
    extra = dict(harness.get("model_args") or {})
    dtype = eval_dtype(report, ref.name)
    if dtype and dtype != "auto":  # auto is lm-eval's default: each checkpoint's own dtype
        extra["dtype"] = dtype
    parts = [f"pretrained={ref.pretrained}"]
    if ref.revision:
        parts.append(f"revision={ref.revision}")
    parts += [f"{k}={v}" for k, v in extra.items() if k not in ("pretrained", "revision")]
    return ",".join(parts)


def command(ref: ModelRef, label: str, report: dict[str, Any], bundle: EvalBundle) -> str:
    harness = report.get("harness") or {}
    s = report["tasks"][label]
    task = bundle.tasks[label]
    parts = ["lm_eval", "--model", str(harness.get("backend") or "hf")]
    parts += ["--model_args", _model_args(ref, report), "--tasks", task.lm_task]
    if task.include:
        parts += ["--include_path", f"{EVAL_DIR}/"]
    if s.get("num_fewshot") is not None:
        parts += ["--num_fewshot", str(s["num_fewshot"])]
    if s.get("limit") is not None:
        parts += ["--limit", str(s["limit"])]
    if s.get("apply_chat_template"):
        parts.append("--apply_chat_template")
    if s.get("gen_kwargs"):
        parts += ["--gen_kwargs", ",".join(f"{k}={v}" for k, v in s["gen_kwargs"].items())]
    batch = s.get("batch_size") or harness.get("batch_size")
    if batch is not None:
        parts += ["--batch_size", str(batch)]
    if harness.get("device"):
        parts += ["--device", str(harness["device"])]
    return " ".join(parts)


def reproduce(loaded: LoadedRecipe, report: dict[str, Any], bundle: EvalBundle) -> dict[str, Any]:
    """Commands per model and task, and what a reader must know to run them."""
    refs = model_refs(loaded, report)
    commands = [
        {"model": ref.name, "task": label, "command": command(ref, label, report, bundle)}
        for label in report["tasks"]
        for ref in refs
    ]
    return {
        "commands": commands,
        "local_only": [r.name for r in refs if not r.published],
        "uses_eval_dir": any(t.include for t in bundle.tasks.values()),
        "tag": release_tag(loaded),
    }
