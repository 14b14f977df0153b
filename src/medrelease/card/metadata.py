"""Hub metadata (the README's YAML front matter) through huggingface_hub's card classes.

`model-index` comes from the gate report: one EvalResult per metric of the candidate.
Validation offline = what huggingface_hub itself does when it loads a card: parse the front
matter with `ModelCard` (strict, `ignore_metadata_errors=False`), rebuild the eval results
from `model-index` and require they round-trip exactly; plus the Hub's documented rules for
the keys we write (ids, relation values). `ModelCard.validate()` needs huggingface.co and is
left to the publish step.
"""

from __future__ import annotations

import re
from typing import Any

from medrelease.card.config import BASE_MODEL_RELATIONS
from medrelease.card.datasets import TaskData
from medrelease.core.errors import VerificationError
from medrelease.recipe.stages import HUB_ID_RE
from medrelease.records.gate_report import GateReport

LANGUAGE_RE = re.compile(r"^([a-z]{2,3}(-[A-Za-z0-9]+)?|code|multilingual)$")


def subset_note(limit: Any, samples: Any = None) -> str | None:
    """How a `limit` (or the documents a sweep's hold-out left the gate, `samples`) is stated
    wherever a number is shown: the scores are on a subset."""
    if samples:
        n = sum(len(ix) for ix in samples.values())
        return f"subset: the {n} examples a seeded hold-out left for the gate"
    if limit is None:
        return None
    if isinstance(limit, float) and limit < 1:
        return f"subset: limit {limit:g} of each task's examples"
    return f"subset: first {limit} examples per task"


def eval_results(report: GateReport, datasets: dict[str, TaskData] | None = None) -> list[Any]:
    """One EvalResult per scored metric of the candidate, with the dataset the task read.

    `dataset.type` is the Hub dataset id from the task definition (lm-eval's `dataset_path`),
    or the task name for data that exists only in the task's files; the split is the one
    lm-eval scored; a `limit` is stated in the dataset name and args.
    """
    from huggingface_hub import EvalResult

    cand = report["candidate"]
    tasks = report["tasks"]
    datasets = datasets or {}
    out = []
    for m in report["metrics"]:
        value = m["values"].get(cand)
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            continue  # no score: no model-index entry
        task = m.get("task") or m["metric"].split("/")[0]
        settings = tasks.get(task) or {}
        data = datasets.get(task)
        sub = m.get("subtask")
        shots = settings.get("num_fewshot")
        limit = settings.get("limit")
        name = f"{task} ({sub})" if sub else task
        if (note := subset_note(limit, settings.get("samples"))) is not None:
            name = f"{name}, {note}"
        args: dict[str, Any] = {}
        if shots is not None:
            args["num_few_shot"] = shots
        if limit is not None:
            args["limit"] = limit
        config = (data.configs.get(sub) if sub else data.config) if data else None
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name="Text Generation",
                dataset_type=(data.hub_id if data else None) or task,
                dataset_name=name,
                dataset_config=config,
                dataset_split=(data.split if data else None) or "test",
                dataset_args=args or None,
                metric_type=m.get("name") or m["metric"].rsplit("/", 1)[-1],
                metric_name=m["metric"],
                metric_value=value,
            )
        )
    return _one_name_per_dataset(out)


def _one_name_per_dataset(results: list[Any]) -> list[Any]:
    """model-index groups results by (task, dataset type, config, split, revision) and keeps one
    dataset name per group: subtasks that read the very same dataset (MMLU-Pro's categories,
    filtered from one config) would come back under the group's name. Keep the first name's
    results for each group; the card's own tables still show every subtask."""
    first: dict[Any, str] = {}
    kept = []
    for r in results:
        name = first.setdefault(r.unique_identifier, r.dataset_name)
        if name == r.dataset_name:
            kept.append(r)
    return kept


def card_data(
    *,
    base_model: list[str],
    relation: str,
    license: str,
    license_name: str | None,
    language: list[str],
    tags: list[str],
    datasets: list[str],
    pipeline_tag: str,
    library_name: str,
    model_name: str | None = None,
    results: list[Any] | None = None,
    license_link: str | None = None,
    quantized_by: str | None = None,
) -> Any:
    from huggingface_hub import ModelCardData

    # `quantized_by`: the key the GGUF publishers' cards carry (who made the files)
    extra: dict[str, Any] = {"quantized_by": quantized_by} if quantized_by else {}
    if base_model:
        extra["base_model_relation"] = relation
    return ModelCardData(
        base_model=base_model or None,
        license=license,
        license_name=license_name,
        license_link=license_link,
        language=language or None,
        tags=tags or None,
        datasets=datasets or None,
        pipeline_tag=pipeline_tag,
        library_name=library_name,
        model_name=model_name if results else None,
        eval_results=results or None,
        **extra,
    )


def compose(data: Any, body: str) -> str:
    """Front matter + body, exactly as huggingface_hub writes a README."""
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def validate_card(text: str, *, expected_results: list[Any] | None, where: str) -> dict[str, Any]:
    """Parse `text` as huggingface_hub does; return the metadata dict or raise."""
    from huggingface_hub import ModelCard

    def fail(what: str) -> VerificationError:
        return VerificationError(
            f"card metadata is invalid: {what}",
            where=where,
            hint="this is a template or recipe problem (release.language, tags, card.*)",
        )

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    meta = card.data.to_dict()
    if "license" not in meta:
        raise fail("no license")
    for bm in _as_list(meta.get("base_model")):
        if not HUB_ID_RE.match(str(bm)):
            raise fail(f"base_model {bm!r} is not a Hub id owner/name")
    rel = meta.get("base_model_relation")
    if rel is not None and rel not in BASE_MODEL_RELATIONS:
        raise fail(f"base_model_relation {rel!r} is not one of {', '.join(BASE_MODEL_RELATIONS)}")
    if rel is not None and not meta.get("base_model"):
        raise fail("base_model_relation without base_model")
    for lang in _as_list(meta.get("language")):
        if not LANGUAGE_RE.match(str(lang)):
            raise fail(f"language {lang!r} is not an ISO 639 code")
    if expected_results is not None:
        got = getattr(card.data, "eval_results", None) or []
        if sorted(map(_key, got)) != sorted(map(_key, expected_results)):
            lost = sorted(set(map(_key, expected_results)) - set(map(_key, got)))
            extra = sorted(set(map(_key, got)) - set(map(_key, expected_results)))
            raise fail(
                "model-index does not round-trip to the gate report's results (first lost: "
                f"{', '.join(lost[0]) if lost else 'none'}; first changed into: "
                f"{', '.join(extra[0]) if extra else 'none'})"
            )
    return dict(meta)


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _key(r: Any) -> tuple[str, ...]:
    fields = (
        r.dataset_type,
        r.dataset_name,
        r.dataset_config,
        r.dataset_split,
        r.dataset_args,
        r.metric_type,
        r.metric_name,
        r.metric_value,
    )
    return tuple(repr(x) for x in fields)
