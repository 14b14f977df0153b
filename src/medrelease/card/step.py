"""`medrelease card`: recipe + manifest.json + gates/report.json -> card/README.md (+ quant cards).

Library entry point: `card_release(loaded, workdir=..., reporter=...)`. The cards are
rendered in a Jinja2 sandbox, their Hub metadata is built and checked with huggingface_hub's
card classes, and everything lands in `<release>/card/` in one atomic move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.card.chart import ChartData
from medrelease.card.config import CardConfig, FileRef
from medrelease.card.evidence import Evidence, load_evidence
from medrelease.card.inputs import INPUTS
from medrelease.card.markdown import tidy_markdown
from medrelease.card.required import check_required, defaulted, required_sections
from medrelease.card.templates import (
    SHIPPED,
    chain_block_overrides,
    make_renderer,
    template_digest,
    template_path,
)
from medrelease.core.atomic import staging_dir
from medrelease.core.console import Reporter
from medrelease.core.errors import RecipeError
from medrelease.core.hashing import HashCache, folder_records
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.core.runner import step_run
from medrelease.core.secrets import assert_no_secrets
from medrelease.core.step import StepResult
from medrelease.core.suggest import did_you_mean
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import CardRecord

CHART_NAME = "metrics.png"
# card name -> path inside the card folder (CONTRACTS.md)
CARD_FILES = {"model": "README.md", "gguf": "gguf/README.md", "awq": "awq/README.md"}


@dataclass
class RenderedCards:
    """What `render_cards` produced, before anything is written."""

    texts: dict[str, str]  # card name -> README text (front matter + body)
    metadata: dict[str, dict[str, Any]]
    context: dict[str, Any]
    chart_series: ChartData | None
    template_digests: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    # published beside the main card: eval/ (task files) and eval_results/ (.eval_results/)
    files: dict[str, bytes] = field(default_factory=dict)


def card_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
) -> StepResult[CardRecord]:
    with step_run(INPUTS, loaded, workdir, reporter) as run:
        paths = run.paths
        evidence = load_evidence(paths)
        rendered = render_cards(loaded, evidence, hashes=run.hashes)
        run.timer.lap("render")
        _write_cards(paths.card, rendered)
        run.timer.lap("write")
        for w in rendered.warnings:
            run.reporter.warn(w)
        record: CardRecord = {
            "status": "done",
            "cards": {name: f"card/{CARD_FILES[name]}" for name in rendered.texts},
            "chart": f"card/{CHART_NAME}" if rendered.chart_series is not None else None,
            "metadata": rendered.metadata,
            "licenses": rendered.context["license"],
            "report_sha256": evidence.report_sha256,
            "outputs": {f"card/{k}": v for k, v in folder_records(paths.card).items()},
            "warnings": rendered.warnings,
        }
        run.record(record)
        for name in rendered.texts:
            run.reporter.info(f"wrote {paths.card / CARD_FILES[name]}")
        return StepResult("card", record, paths.manifest, warnings=rendered.warnings)


def _write_cards(folder: Path, rendered: RenderedCards) -> None:
    """The cards, the chart and the shipped task files, into `folder` at once (staged)."""
    with staging_dir(folder, replace=True) as tmp:
        for name, text in rendered.texts.items():
            # a token pasted into a recipe text field must never reach a public card
            assert_no_secrets(text, what=f"card/{CARD_FILES[name]}")
            target = tmp / CARD_FILES[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        if rendered.chart_series is not None:
            from medrelease.card.chart import render_chart

            render_chart(tmp / CHART_NAME, *rendered.chart_series)
        for rel, data in rendered.files.items():
            # task files are published too: the same check as the cards
            assert_no_secrets(data.decode("utf-8", errors="replace"), what=f"card/{rel}")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)


@dataclass
class CardInputs:
    context: dict[str, Any]
    merge_inputs: list[str]
    base_models: list[str]
    series: ChartData | None
    warnings: list[str]
    datasets: dict[str, Any]  # task label -> card.datasets.TaskData
    bundle: Any  # card.eval_bundle.EvalBundle


def card_inputs(
    loaded: LoadedRecipe, evidence: Evidence, *, hashes: HashCache | None = None
) -> CardInputs:
    """Every variable the templates see, with the license check done."""
    from medrelease.card.context import build_context
    from medrelease.card.datasets import task_datasets
    from medrelease.card.eval_bundle import build_bundle
    from medrelease.card.filters import card_filters
    from medrelease.card.licenses import check_licenses, parent_stages
    from medrelease.card.names import stage_hub_id
    from medrelease.recipe.merge_refs import merge_stage_names

    recipe = loaded.recipe
    cfg = recipe.card or CardConfig()
    stages = set(recipe.stages)
    for name in cfg.stage_repos:
        if name not in stages:
            raise RecipeError(
                f"card.stage_repos: {name!r} is not a stage" + did_you_mean(name, stages),
                where=loaded.where(("card", "stage_repos", name)),
            )
    mergekit_config = evidence.merge.get("mergekit_config") or recipe.merge
    merge_inputs = merge_stage_names(mergekit_config)
    parents = parent_stages(loaded, merge_inputs)
    licenses, override = check_licenses(loaded, parents, evidence.merge.get("stages") or {})
    base_models = list(dict.fromkeys(h for p in parents if (h := stage_hub_id(loaded, p))))
    unverified = [v.stage for v in licenses if not v.verified]
    datasets = task_datasets(loaded, evidence.report)
    bundle = build_bundle(loaded, evidence.report, datasets, ship_data=cfg.eval_data)

    context = build_context(
        loaded,
        evidence,
        merge_inputs=merge_inputs,
        licenses=licenses,
        license_override=override,
        base_models=base_models,
        chart=None,
        datasets=datasets,
        bundle=bundle,
    )
    context["provenance"], warnings = _provenance(loaded, evidence, hashes)
    if unverified:
        warnings.append(
            f"license of stand-in stage(s) {', '.join(unverified)} not verified: the card says "
            "so; declare them in card.stage_licenses for a release"
        )
    if not evidence.report.get("passed"):
        warnings.append("the gate report did not pass: the card says so in its overview")
    series = _chart(context, warnings) if cfg.chart else None

    filters = card_filters(cfg.decimals)
    # user text fields are Jinja too, rendered in the same sandbox
    texts = {
        key: _render_text(loaded, key, getattr(cfg, key), context, filters)
        for key in ("intended_use", "out_of_scope", "safety_notes")
    }
    context["sections"] = required_sections(
        texts["intended_use"], texts["out_of_scope"], texts["safety_notes"]
    )
    if missing := defaulted(texts["intended_use"], texts["out_of_scope"]):
        warnings.append(
            f"{' and '.join(missing)} not set: the cards show medrelease's default text, marked "
            "as such; write the release's own for a release that is not a demo"
        )
    return CardInputs(context, merge_inputs, base_models, series, warnings, datasets, bundle)


def _provenance(
    loaded: LoadedRecipe, evidence: Evidence, hashes: HashCache | None
) -> tuple[dict[str, Any], list[str]]:
    """The banner of a build made of checkpoints that are not the recipe's (it comes first on
    every card: stages/provenance.py), and the warning that says so."""
    from medrelease.stages.provenance import banner, overridden_stages

    overridden = overridden_stages(loaded, evidence.manifest, hashes or HashCache(None))
    block = {
        "overridden": [s.as_dict() for s in overridden],
        "banner": banner(overridden) if overridden else "",
    }
    if not overridden:
        return block, []
    names = ", ".join(s.name for s in overridden)
    return block, [
        f"built from checkpoints that are not the recipe's ({names}): every card carries a "
        "banner saying so"
    ]


def _chart(context: dict[str, Any], warnings: list[str]) -> Any:
    """The chart's data when a gated metric has values (the context names its file)."""
    from medrelease.card.chart import chart_data

    data = chart_data(context["evaluation"], context["quants"])
    if data.metrics and data.series:
        context["chart"] = CHART_NAME
        return data
    warnings.append("no gated metric has values: the card has no chart")
    return None


# card name -> (template option, Hub metadata, model-index results the card must carry)
CardPlan = dict[str, tuple[str | None, Any, list[Any] | None]]


def render_cards(
    loaded: LoadedRecipe, evidence: Evidence, *, hashes: HashCache | None = None
) -> RenderedCards:
    """Render every card in memory (nothing is written): used by the step and by --diff."""
    from medrelease.card.extras import card_extras
    from medrelease.card.filters import card_filters

    cfg = loaded.recipe.card or CardConfig()
    inputs = card_inputs(loaded, evidence, hashes=hashes)
    warnings = inputs.warnings
    filters = card_filters(cfg.decimals)
    out_texts: dict[str, str] = {}
    out_meta: dict[str, dict[str, Any]] = {}
    digests: dict[str, str] = {}
    for name, (template_opt, data, expected) in _card_plan(loaded, cfg, inputs, evidence).items():
        out_texts[name], out_meta[name], digests[name] = _render_card(
            loaded, cfg, name, template_opt, data, expected, inputs.context, filters
        )
    if evidence.quantize is None:
        warnings.append("no quantize step in the manifest: only the main card was rendered")
    files, skipped = card_extras(
        evidence.report, inputs.datasets, inputs.bundle, cfg.hub_benchmarks
    )
    warnings += skipped
    return RenderedCards(
        texts=out_texts,
        metadata=out_meta,
        context=inputs.context,
        chart_series=inputs.series,
        template_digests=digests,
        warnings=warnings,
        files=files,
    )


def _card_plan(
    loaded: LoadedRecipe, cfg: CardConfig, inputs: CardInputs, evidence: Evidence
) -> CardPlan:
    """Which cards to render (the main one; a GGUF and an AWQ card when those quants exist),
    each with its Hub metadata."""
    from medrelease.card import metadata as md

    rel = loaded.recipe.release
    relation = cfg.base_model_relation or ("merge" if len(inputs.merge_inputs) > 1 else "finetune")
    results = md.eval_results(evidence.report, inputs.datasets)
    common: dict[str, Any] = {
        "license": rel.license,
        "license_name": rel.license_name,
        "license_link": rel.license_link,
        "language": rel.language,
        "datasets": rel.datasets,
        "pipeline_tag": cfg.pipeline_tag,
    }
    plan: CardPlan = {
        "model": (
            cfg.template,
            md.card_data(
                base_model=inputs.base_models,
                relation=relation,
                tags=[*rel.tags, "medical", "merge", "medrelease"],
                library_name=cfg.library_name,
                model_name=rel.name,
                results=results,
                **common,
            ),
            results,
        )
    }
    quant_cards = {
        "gguf": (cfg.gguf_template, ["gguf"], "gguf"),
        "awq": (cfg.awq_template, ["awq", "compressed-tensors"], cfg.library_name),
    }
    for family, (template, tags, library) in quant_cards.items():
        if inputs.context["quants"].get(family):
            plan[family] = (
                template,
                md.card_data(
                    base_model=[rel.repo],
                    relation="quantized",
                    tags=[*rel.tags, "medical", *tags, "medrelease"],
                    library_name=library,
                    quantized_by=inputs.context["quantized_by"],
                    **common,
                ),
                None,
            )
    return plan


def _render_card(
    loaded: LoadedRecipe,
    cfg: CardConfig,
    name: str,
    template_opt: str | None,
    data: Any,
    expected: list[Any] | None,
    context: dict[str, Any],
    filters: dict[str, Any],
) -> tuple[str, dict[str, Any], str]:
    """One card: (its text, its validated Hub metadata, its template's digest)."""
    from medrelease.card import metadata as md

    user_template = template_path(loaded, template_opt, name)
    renderer = make_renderer(user_template=user_template, filters=filters)
    entry = user_template.name if user_template else SHIPPED[name]
    if name == "model" and cfg.blocks:
        blocks = {
            block: (
                loaded.where(("card", "blocks", block)),
                _text_of(loaded, ("card", "blocks", block), value),
            )
            for block, value in cfg.blocks.items()
        }
        entry = chain_block_overrides(renderer, entry, blocks)
    body = tidy_markdown(renderer.render(entry, context))
    shown = str(user_template) if user_template else f"builtin/{SHIPPED[name]}"
    check_required(body, context["sections"], shown)
    text = md.compose(data, body)
    meta = md.validate_card(text, expected_results=expected, where=f"card/{CARD_FILES[name]}")
    return text, meta, template_digest(renderer, entry)


def _text_of(loaded: LoadedRecipe, loc: tuple[str, ...], value: str | FileRef) -> str:
    if isinstance(value, str):
        return value
    p = Path(value.file).expanduser()
    p = p if p.is_absolute() else loaded.base_dir / p
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(
            f"{'.'.join(loc)}: cannot read {p} ({type(exc).__name__})",
            where=loaded.where(loc),
            hint="paths are relative to the recipe file",
        ) from None


def _render_text(
    loaded: LoadedRecipe,
    key: str,
    value: str | FileRef | None,
    context: dict[str, Any],
    filters: dict[str, Any],
) -> str | None:
    if value is None:
        return None
    text = _text_of(loaded, ("card", key), value)
    renderer = make_renderer(user_template=None, filters=filters)
    name = f"card.{key}"
    renderer.overrides.sources[name] = text
    return renderer.render(name, context)


def card_context(loaded: LoadedRecipe, *, workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    """The variables a card template sees (for `medrelease card --variables`)."""
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    return card_inputs(loaded, load_evidence(paths)).context
