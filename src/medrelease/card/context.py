"""The variables a card template sees, built from the recipe, manifest and gate report only.

Values stay raw (floats as in report.json); templates format them with the `num`, `delta`
and `human_bytes` filters, so the rounding rule lives in one place (`card.decimals`).
Everything is plain dicts, lists, strings and numbers: the sandbox needs nothing else.
The evaluation is built in card/evaluation.py, the quants in card/quants.py, the Hub names
in card/names.py.
"""

from __future__ import annotations

from typing import Any, TypedDict

import yaml

from medrelease.card.datasets import TaskData
from medrelease.card.eval_bundle import EvalBundle
from medrelease.card.evaluation import evaluation, evaluation_provenance
from medrelease.card.evidence import Evidence
from medrelease.card.licenses import ParentLicense
from medrelease.card.names import PUBLIC_HUB, hub_url, release_tag, repo_ids, stage_hub_id
from medrelease.card.prompt_format import prompt_example
from medrelease.card.quants import QuantRow, not_shipped, quant_rows
from medrelease.card.sweep_section import sweep_section
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.schema import chat_template_text
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage


class StageRow(TypedDict):
    name: str
    kind: str  # hub | adapter | local
    source: str
    hub_id: str | None
    revision: str | None
    parent: str | None
    description: str | None
    reference: bool


class Usage(TypedDict):
    generation_config: dict[str, object]
    has_chat_template: bool
    chat_template: str | None  # the template's text, when known
    prompt_example: str | None  # the template rendered with {system_prompt} and {prompt}
    chat_template_source: str  # recipe | inherited
    chat_template_file: str | None
    tokenizer_from: str | None


def stage_rows(loaded: LoadedRecipe, evidence: Evidence) -> list[StageRow]:
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
            StageRow(
                name=name,
                kind=kind,
                source=source,
                hub_id=stage_hub_id(loaded, name),
                revision=rec.get("revision") or (rec.get("adapter") or {}).get("revision"),
                parent=parent,
                description=spec.description,
                reference=spec.reference,
            )
        )
    return rows


def lineage_lines(
    stages: list[StageRow], merge_inputs: list[str], method: str, repo: str,
    quants: dict[str, list[QuantRow]],
) -> list[str]:  # fmt: skip
    """A text tree: stages from their roots, then the merge, then the accepted quants."""
    children: dict[str | None, list[StageRow]] = {}
    for s in stages:
        children.setdefault(s["parent"], []).append(s)
    lines: list[str] = []

    def label(s: StageRow) -> str:
        where = s["hub_id"] or s["source"]
        rev = f"@{str(s['revision'])[:12]}" if s["revision"] else ""
        return f"{s['name']}  ({where}{rev})"

    def walk(s: StageRow, prefix: str, last: bool, root: bool) -> None:
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


def user_decoding(settings: dict[str, object]) -> dict[str, object]:
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


def usage(loaded: LoadedRecipe, evidence: Evidence) -> Usage:
    settings = evidence.merge.get("output_settings") or {}
    tmpl = chat_template_text(loaded.recipe, loaded.base_dir)
    source = settings.get("chat_template") or ("recipe" if tmpl else "inherited")
    where = chat_template_file(evidence)
    return Usage(
        generation_config=user_decoding(settings.get("generation_config") or {}),
        # one answer for every card: the main card's prompt format and the quant cards'
        # chat commands agree
        has_chat_template=bool(tmpl or where),
        chat_template=tmpl or evidence.chat_template,
        prompt_example=prompt_example(tmpl or evidence.chat_template, evidence.special_tokens),
        chat_template_source=str(source),
        chat_template_file=where,
        tokenizer_from=loaded.recipe.output.tokenizer_from,
    )


def default_citation(loaded: LoadedRecipe, url: str) -> str:
    rel = loaded.recipe.release
    key = "".join(ch for ch in rel.name.lower() if ch.isalnum())
    authors = " and ".join(rel.authors) or rel.repo.split("/")[0]
    return (
        f"@misc{{{key},\n"
        f"  title  = {{{rel.name} {rel.version}}},\n"
        f"  author = {{{authors}}},\n"
        f"  howpublished = {{\\url{{{url}/{rel.repo}}}}},\n"
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
    rows = stage_rows(loaded, evidence)
    # reference models are compared against in the gates, not ancestors: kept out of the lineage
    stages = [r for r in rows if not r["reference"]]
    references = [r for r in rows if r["reference"]]
    quants = quant_rows(evidence)
    method = str(evidence.merge.get("method") or loaded.recipe.merge.get("merge_method"))
    mergekit_config = evidence.merge.get("mergekit_config") or loaded.recipe.merge
    url = hub_url()
    tools = (evidence.quantize.get("tools") if evidence.quantize else None) or {}
    return {
        "release": rel.model_dump(mode="json"),
        "repos": repo_ids(loaded),
        "tag": release_tag(loaded),
        "hub_url": url,
        "hub_public": url == PUBLIC_HUB,  # hf.co shortcuts (Ollama, LM Studio) work there only
        "model": evidence.facts or {},
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
        "not_shipped": not_shipped(evidence),
        "quant_metrics": {
            fam: list(dict.fromkeys(name for q in qs for name in q["metrics"]))
            for fam, qs in quants.items()
        },
        "imatrix": evidence.quantize.get("imatrix") if evidence.quantize else None,
        "quantize_tools": {
            "llama_cpp": tools.get("llama_cpp_python"),
            "llama_cpp_commit": tools.get("llama_cpp_commit") or tools.get("llama.cpp"),
            "llmcompressor": tools.get("llmcompressor"),
        },
        "quantized_by": quantized_by(loaded),
        "usage": usage(loaded, evidence),
        "license": {
            "release": rel.license,
            "name": rel.license_name,
            "parents": [v.as_dict() for v in licenses],
            "override_reason": license_override,
        },
        "chart": chart,
        "sweep": sweep_section(evidence.sweep, evidence.merge, evidence.report),
        "citation": rel.citation or default_citation(loaded, url),
    }


def quantized_by(loaded: LoadedRecipe) -> str:
    """Who made the quants (the Hub's `quantized_by`): the release's authors, else its org."""
    rel = loaded.recipe.release
    return ", ".join(rel.authors) or rel.repo.split("/")[0]
