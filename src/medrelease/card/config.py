"""The `card:` section of a recipe (owned by the card step).

    card:
      template: cards/my-model.md.j2        # main card; default: the shipped model.md.j2
      gguf_template: null                   # GGUF repo card; default: shipped gguf.md.j2
      awq_template: null                    # AWQ repo card; default: shipped awq.md.j2
      blocks:                               # replace named {% block %}s of the main card
        overview: "A {{ release.name }} for clinical question answering."
        citation: {file: ./citation.md.j2}
      intended_use: {file: ./intended-use.md}   # text under "Intended use" (cannot be removed)
      out_of_scope: "Diagnosis, triage or treatment decisions without a clinician."
      safety_notes: "Evaluated on English only."  # added to the fixed medical safety section
      stage_licenses: {sft: apache-2.0}     # for checkpoints whose README does not say
      stage_repos: {sft: org/model-sft}     # Hub ids of local stages (for base_model)
      license_override: {reason: "Base model authors granted a written exception."}
      decimals: 4                           # digits shown for metric values
      eval_data: true                       # ship custom tasks' data files in eval/ (false when
                                            # their license does not allow redistribution)
      hub_benchmarks: {org/bench: task_id}  # more Hub-registered benchmarks for .eval_results/

Every path is relative to the recipe file. Text fields are Jinja (rendered in the same sandbox
as the templates), so they may use `{{ release.name }}` and the other card variables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medrelease.recipe.base import Section

BASE_MODEL_RELATIONS = ("merge", "finetune", "adapter", "quantized")


class FileRef(Section):
    file: str = Field(description="path of a text / Jinja file, relative to the recipe")


TextOrFile = str | FileRef


class LicenseOverride(Section):
    reason: str = Field(description="why parents with other or unknown licenses are acceptable")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if len(v.strip()) < 10:
            raise ValueError("state the reason for the license override in a sentence")
        return v.strip()


class CardConfig(Section):
    template: str | None = Field(default=None, description="main model card template (Jinja2)")
    gguf_template: str | None = Field(default=None, description="GGUF repo card template")
    awq_template: str | None = Field(default=None, description="AWQ repo card template")
    blocks: dict[str, TextOrFile] = Field(
        default_factory=dict, description="replace named blocks of the main card template"
    )
    intended_use: TextOrFile | None = None
    out_of_scope: TextOrFile | None = None
    safety_notes: TextOrFile | None = None
    pipeline_tag: str = "text-generation"
    library_name: str = "transformers"
    base_model_relation: Literal["merge", "finetune", "adapter"] | None = Field(
        default=None, description="default: merge when the merge reads several stages"
    )
    stage_licenses: dict[str, str] = Field(default_factory=dict)
    stage_repos: dict[str, str] = Field(default_factory=dict)
    license_override: LicenseOverride | None = None
    chart: bool = True
    decimals: int = Field(default=4, ge=1, le=8)
    eval_data: bool = Field(
        default=True,
        description="ship the data files of custom gate tasks in the model repo's eval/ folder",
    )
    hub_benchmarks: dict[str, str] = Field(
        default_factory=dict,
        description="Hub benchmark dataset id -> task id of its eval.yaml, for .eval_results/",
    )

    @field_validator("hub_benchmarks")
    @classmethod
    def _benchmark_ids(cls, v: dict[str, str]) -> dict[str, str]:
        from medrelease.recipe.stages import HUB_ID_RE

        for dataset, task in v.items():
            if not HUB_ID_RE.match(dataset):
                raise ValueError(f"{dataset!r} is not a Hub dataset id owner/name")
            if not str(task).strip():
                raise ValueError(f"{dataset}: the task id of its eval.yaml is empty")
        return v
