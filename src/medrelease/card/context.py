"""The variables a card template sees, built from the recipe, manifest and gate report only.

Values stay raw (floats as in report.json); templates format them with the `num`, `delta`
and `human_bytes` filters, so the rounding rule lives in one place (`card.decimals`).
Everything is plain dicts, lists, strings and numbers: the sandbox needs nothing else.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import yaml

from medrelease.card.datasets import TaskData
from medrelease.card.eval_bundle import EvalBundle
from medrelease.card.evidence import Evidence
from medrelease.card.licenses import ParentLicense
from medrelease.card.sweep_section import sweep_section
from medrelease.recipe.load import LoadedRecipe
from medrelease.recipe.schema import chat_template_text
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage
from medrelease.records.gate_report import GateReport


def quant_repos(loaded: LoadedRecipe) -> dict[str, str]:
    """Hub repo of each card; `publish.gguf_repo` / `awq_repo` patterns when the recipe has them."""
    rel = loaded.recipe.release
    fields = {"repo": rel.repo, "name": rel.name, "version": rel.version}
    pub = loaded.recipe.publish
    gguf = str(getattr(pub, "gguf_repo", None) or "{repo}-GGUF")
    awq = str(getattr(pub, "awq_repo", None) or "{repo}-AWQ")
    return {"model": rel.repo, "gguf": gguf.format(**fields), "awq": awq.format(**fields)}


def stage_hub_id(loaded: LoadedRecipe, name: str) -> str | None:
    spec = loaded.recipe.stages[name]
    card = loaded.recipe.card
    if card and name in card.stage_repos:
        return card.stage_repos[name]
    if isinstance(spec, HubStage):
        return spec.hub
    return None


def stage_rows(loaded: LoadedRecipe, evidence: Evidence) -> list[dict[str, Any]]:
    # the merge records the stages it read; baselines it did not read (reference models)
    # are recorded by the gate
    gated = (evidence.report or {}).get("models") or {}
    recorded = {**gated, **(evidence.merge.get("stages") or {})}
    rows = []
    for name, spec in loaded.recipe.stages.items():
        rec = recorded.get(name) or {}
        if isinstance(spec, HubStage):
            kind, source = "hub", spec.hub
        elif isinstance(spec, AdapterStage):
            kind, source = "adapter", f"adapter on {spec.base}"
        else:
            assert isinstance(spec, LocalStage)
            kind, source = "local", "local checkpoint"
        parent = spec.base if isinstance(spec, AdapterStage) else spec.parent
        rows.append(
            {
                "name": name,
                "kind": kind,
                "source": source,
                "hub_id": stage_hub_id(loaded, name),
                "revision": rec.get("revision") or (rec.get("adapter") or {}).get("revision"),
                "parent": parent,
                "description": spec.description,
                "reference": spec.reference,
            }
        )
    return rows


def lineage_lines(
    stages: list[dict[str, Any]], merge_inputs: list[str], method: str, repo: str,
    quants: dict[str, list[dict[str, Any]]],
) -> list[str]:  # fmt: skip
    """A text tree: stages from their roots, then the merge, then the accepted quants."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in stages:
        children.setdefault(s["parent"], []).append(s)
    lines: list[str] = []

    def label(s: dict[str, Any]) -> str:
        where = s["hub_id"] or s["source"]
        rev = f"@{str(s['revision'])[:12]}" if s["revision"] else ""
        return f"{s['name']}  ({where}{rev})"

    def walk(s: dict[str, Any], prefix: str, last: bool, root: bool) -> None:
        lines.append(label(s) if root else f"{prefix}{'└── ' if last else '├── '}{label(s)}")
        kids = children.get(s["name"], [])
        inner = "" if root else prefix + ("    " if last else "│   ")
        for i, k in enumerate(kids):
            walk(k, inner, i == len(kids) - 1, False)

    for root in children.get(None, []):
        walk(root, "", True, True)
    lines.append(f"merge ({method}): {' + '.join(merge_inputs)}  ->  {repo}")
    fams = [(fam, qs) for fam, qs in quants.items() if qs]
    for i, (fam, qs) in enumerate(fams):
        branch = "└── " if i == len(fams) - 1 else "├── "
        lines.append(f"{branch}{fam.upper()}: {', '.join(q['type'] for q in qs)}")
    return lines


def evaluation(report: GateReport) -> dict[str, Any]:
    cand = report["candidate"]
    models = report["models"]
    baselines = [m for m in models if m != cand]
    rows = []
    for m in report["metrics"]:
        # a model the harness could not score on a metric has null: shown as "–"
        values = {k: v for k, v in m["values"].items() if _is_number(v)}
        stderr = {k: v for k, v in (m.get("stderr") or {}).items() if _is_number(v)}
        deltas = {b: values[cand] - values[b] for b in baselines if b in values and cand in values}
        rows.append(
            {
                "metric": m["metric"],
                "task": m.get("task") or m["metric"].split("/")[0],
                "subtask": m.get("subtask"),
                "name": m.get("name") or m["metric"].rsplit("/", 1)[-1],
                "higher_is_better": m.get("higher_is_better", True),
                "scores": values,
                "stderr": stderr,
                "deltas": deltas,
            }
        )
    summary = [r for r in rows if not r["subtask"]]
    subjects: list[dict[str, Any]] = []
    for r in rows:
        if not r["subtask"]:
            continue
        key = (r["task"], r["name"])
        group = next((g for g in subjects if (g["task"], g["name"]) == key), None)
        if group is None:
            group = {"task": r["task"], "name": r["name"], "rows": []}
            subjects.append(group)
        group["rows"].append(r)
    tasks = [{"name": name, **settings} for name, settings in report["tasks"].items()]
    return {
        "passed": bool(report.get("passed")),
        "candidate": cand,
        "baselines": baselines,
        "models": models,
        "harness": report.get("harness") or {},
        "tasks": tasks,
        "summary": summary,
        "subjects": subjects,
        "rules": report["rules"],
        "by_metric": {r["metric"]: r for r in rows},
        "gated_metrics": list(dict.fromkeys(r["metric"] for r in report["rules"] if "metric" in r)),
    }


def evaluation_provenance(
    loaded: LoadedRecipe,
    report: GateReport,
    datasets: dict[str, TaskData],
    bundle: EvalBundle,
) -> dict[str, Any]:
    """What a reader needs to rerun the gates: datasets, dtype, subset notes, commands."""
    from medrelease.card.metadata import subset_note
    from medrelease.card.reproduce import dtype_reason, eval_dtype, reproduce

    cand = report["candidate"]
    rerun = reproduce(loaded, report, bundle)
    dtypes = {m: d for m in report["models"] if (d := eval_dtype(report, m))}
    datasets_by_task = {}
    for label, settings in report["tasks"].items():
        data = datasets.get(label)
        datasets_by_task[label] = {
            "id": data.hub_id if data else None,
            "split": data.split if data else None,
            "local_copy": bool(data and data.local_copy),
            "in_eval_dir": bundle.tasks[label].include if label in bundle.tasks else False,
            "subset": subset_note(settings.get("limit")),
        }
    return {
        "dtype": dtypes.get(cand) or eval_dtype(report),
        "dtype_reason": dtype_reason(report),
        "dtypes": dtypes,
        "datasets": datasets_by_task,
        "subset": any(d["subset"] for d in datasets_by_task.values()),
        "eval_files": sorted(bundle.files),
        "notes": list(dict.fromkeys(bundle.notes)),
        # command lines (what templates written for earlier versions show) and their details
        "reproduce": [c["command"] for c in rerun["commands"]],
        "rerun": rerun,
    }


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # not NaN


def quant_rows(evidence: Evidence) -> dict[str, list[dict[str, Any]]]:
    """Accepted quants per family, with files, checks and their eval metrics."""
    out: dict[str, list[dict[str, Any]]] = {"gguf": [], "awq": []}
    for q in evidence.quants:
        if not q["accepted"]:
            continue
        files: list[dict[str, Any]] = [
            {"path": path, "name": path.rsplit("/", 1)[-1], **meta}
            for path, meta in q["files"].items()
        ]
        checks = [{"name": name, **c} for name, c in q["checks"].items()]
        evaluated = q["checks"].get("eval")
        metrics = (evaluated.get("metrics") if evaluated else None) or {}
        row = {
            "family": q["family"],
            "type": q["type"],
            "files": files,
            "size": sum(int(f.get("size") or 0) for f in files),
            "checks": checks,
            "metrics": metrics,
        }
        out.setdefault(q["family"], []).append(row)
    return out


# What a user sets when generating (transformers GenerationConfig options). Everything else in
# generation_config.json is bookkeeping (`_from_model_config`, `transformers_version`), output
# switches (`output_attentions`) or token ids the tokenizer and config already carry.
USER_DECODING_KEYS = frozenset(
    {
        "do_sample", "temperature", "top_p", "top_k", "min_p", "typical_p",
        "repetition_penalty", "no_repeat_ngram_size", "max_new_tokens", "min_new_tokens",
        "num_beams", "length_penalty", "epsilon_cutoff", "eta_cutoff", "penalty_alpha",
        "encoder_repetition_penalty",
    }
)  # fmt: skip


def user_decoding(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k in USER_DECODING_KEYS and v is not None}


def chat_template_file(evidence: Evidence) -> str | None:
    """Where the merged model's chat template ships; None when it has none."""
    if evidence.chat_template_in != "unknown":
        return evidence.chat_template_in
    # merged/ is not on disk: the merge's recorded file list is all there is
    outputs = evidence.merge.get("outputs") or {}
    if any(str(p).rsplit("/", 1)[-1] == "chat_template.jinja" for p in outputs):
        return "chat_template.jinja"
    return "tokenizer_config.json"


def usage(loaded: LoadedRecipe, evidence: Evidence) -> dict[str, Any]:
    settings = evidence.merge.get("output_settings") or {}
    tmpl = chat_template_text(loaded.recipe, loaded.base_dir)
    source = settings.get("chat_template") or ("recipe" if tmpl else "inherited")
    return {
        "generation_config": user_decoding(settings.get("generation_config") or {}),
        "chat_template": tmpl,
        "chat_template_source": source,
        "chat_template_file": chat_template_file(evidence),
        "tokenizer_from": loaded.recipe.output.tokenizer_from,
    }


def default_citation(loaded: LoadedRecipe) -> str:
    rel = loaded.recipe.release
    key = "".join(ch for ch in rel.name.lower() if ch.isalnum())
    authors = " and ".join(rel.authors) or rel.repo.split("/")[0]
    return (
        f"@misc{{{key},\n"
        f"  title  = {{{rel.name} {rel.version}}},\n"
        f"  author = {{{authors}}},\n"
        f"  howpublished = {{\\url{{https://huggingface.co/{rel.repo}}}}},\n"
        f"  note   = {{model card generated by medrelease from the release evidence}}\n"
        f"}}"
    )


def build_context(
    loaded: LoadedRecipe,
    evidence: Evidence,
    *,
    merge_inputs: list[str],
    licenses: list[ParentLicense],
    license_override: str | None,
    base_models: list[str],
    chart: str | None,
    datasets: dict[str, TaskData],
    bundle: EvalBundle,
) -> dict[str, Any]:
    rel = loaded.recipe.release
    repos = quant_repos(loaded)
    rows = stage_rows(loaded, evidence)
    # reference models are compared against in the gates, not ancestors: kept out of the lineage
    stages = [r for r in rows if not r["reference"]]
    references = [r for r in rows if r["reference"]]
    quants = quant_rows(evidence)
    method = str(evidence.merge.get("method") or loaded.recipe.merge.get("merge_method"))
    mergekit_config = evidence.merge.get("mergekit_config") or loaded.recipe.merge
    return {
        "release": rel.model_dump(mode="json"),
        "repos": repos,
        "stages": stages,
        "references": references,
        "lineage": lineage_lines(stages, merge_inputs, method, rel.repo, quants),
        "base_models": base_models,
        "merge": {
            "method": method,
            "seed": evidence.merge.get("seed"),
            "inputs": merge_inputs,
            "config_yaml": yaml.safe_dump(mergekit_config, sort_keys=False).rstrip(),
            "mergekit": (evidence.merge.get("tools") or {}).get("mergekit"),
        },
        "evaluation": {
            **evaluation(evidence.report),
            **evaluation_provenance(loaded, evidence.report, datasets, bundle),
        },
        "quants": quants,
        "quant_metrics": {
            fam: list(dict.fromkeys(name for q in rows for name in q["metrics"]))
            for fam, rows in quants.items()
        },
        "imatrix": evidence.quantize.get("imatrix") if evidence.quantize else None,
        "usage": usage(loaded, evidence),
        "license": {
            "release": rel.license,
            "name": rel.license_name,
            "parents": [v.as_dict() for v in licenses],
            "override_reason": license_override,
        },
        "chart": chart,
        "sweep": sweep_section(evidence.sweep, evidence.merge, evidence.report),
        "citation": rel.citation or default_citation(loaded),
    }
