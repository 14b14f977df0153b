"""The release recipe: one YAML file per release in `merges/`.

    release:  name, version, repo, license, ... (who/what is released)
    stages:   name -> checkpoint source (see recipe/stages.py)
    merge:    a mergekit configuration, verbatim; stage names stand for their checkpoints
    output:   chat template and recommended decoding (generation_config) for the merged model
    gates / quantize / card / publish: the later steps' sections

Unknown keys are errors everywhere, including inside `merge:` (mergekit itself ignores them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from medrelease.card.config import CardConfig
from medrelease.gate.config import GatesConfig
from medrelease.publish.config import PublishConfig
from medrelease.quantize.config import QuantizeConfig
from medrelease.recipe.base import Section
from medrelease.recipe.licenses import LIST_URL, unknown_license
from medrelease.recipe.stages import HUB_ID_RE, STAGE_NAME_RE, StageSpec, normalize_stage
from medrelease.sweep.config import SweepConfig

RELEASE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class ReleaseInfo(Section):
    name: str = Field(description="release name; also the folder under the workdir")
    version: str
    repo: str = Field(description="Hub repo id of the merged model, owner/name")
    license: str = Field(description="Hub license id, e.g. apache-2.0, llama3.1, other")
    license_name: str | None = Field(default=None, description="with license: other")
    license_link: str | None = Field(
        default=None, description="with license: other: URL or file of the license text"
    )
    language: list[str] = ["en"]
    tags: list[str] = []
    datasets: list[str] = []
    description: str | None = None
    authors: list[str] = []
    citation: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not RELEASE_NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a usable release name (letters, digits, '.', '_', '-'; no spaces)"
            )
        return v

    @field_validator("license")
    @classmethod
    def _license(cls, v: str) -> str:
        why = unknown_license(v)
        if why is not None:
            raise PydanticCustomError(
                "hub_license",
                "{why}",
                {
                    "why": why,
                    "fix": f"use an id from {LIST_URL}, or `license: other` with license_name "
                    "and license_link",
                },
            )
        return v

    @model_validator(mode="after")
    def _other_license(self) -> ReleaseInfo:
        missing = [k for k in ("license_name", "license_link") if not getattr(self, k)]
        if self.license == "other" and missing:
            raise PydanticCustomError(
                "license_other",
                "license is 'other' but {missing} not set",
                {
                    "missing": " and ".join(missing) + (" is" if len(missing) == 1 else " are"),
                    "fix": "add `license_name:` (a short id, e.g. my-license) and "
                    "`license_link:` (a URL, or LICENSE: a file published with the weights) "
                    "under release:",
                },
            )
        return self

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not HUB_ID_RE.match(v):
            raise ValueError(f"{v!r} is not a Hub repo id of the form owner/name")
        return v


class ChatTemplateFile(Section):
    file: str


class StopCheck(Section):
    """Behavioural "it stops" check of the merged model (see medrelease.checks.stops)."""

    prompt: str = Field(
        default="Which organ makes insulin? Answer in one sentence.",
        description="user message; answered with the chat template and greedy decoding",
    )
    max_new_tokens: int = Field(
        default=64, ge=1, le=4096, description="the answer must end with an EOS within this"
    )


class OutputConfig(Section):
    chat_template: str | ChatTemplateFile | None = Field(
        default=None, description="Jinja chat template (inline) or {file: path}"
    )
    generation_config: dict[str, Any] | None = Field(
        default=None, description="recommended decoding written to generation_config.json"
    )
    tokenizer_from: str | None = Field(
        default=None, description="stage whose tokenizer files the output keeps"
    )
    stop_check: bool | StopCheck = Field(
        default=False,
        description="greedy-decode a short chat answer after the merge and require it to end "
        "with a declared EOS token (true, or {prompt, max_new_tokens}); off by default: it "
        "costs a generation, and random-weight stand-ins never stop",
    )

    def stop_check_settings(self) -> StopCheck | None:
        if isinstance(self.stop_check, StopCheck):
            return self.stop_check
        return StopCheck() if self.stop_check else None


class Recipe(Section):
    release: ReleaseInfo
    stages: dict[str, StageSpec]
    merge: dict[str, Any]
    output: OutputConfig = OutputConfig()
    seed: int = Field(default=20240611, description="random seed for merge methods that sample")
    allow_pickle: bool = Field(default=False, description="accept pickle weights for all stages")
    gates: GatesConfig | None = None
    quantize: QuantizeConfig | None = None
    card: CardConfig | None = None
    publish: PublishConfig = PublishConfig()
    sweep: SweepConfig | None = None

    @field_validator("stages", mode="before")
    @classmethod
    def _normalize(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: normalize_stage(s) for k, s in v.items()}
        return v

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("declare at least one stage")
        for name in v:
            if not STAGE_NAME_RE.match(name):
                raise ValueError(f"stage name {name!r} must be an identifier (letters, digits, _)")
        return v

    @model_validator(mode="after")
    def _references(self) -> Recipe:
        from medrelease.recipe.stages import AdapterStage

        names = set(self.stages)
        for name, spec in self.stages.items():
            if spec.parent is not None and spec.parent not in names:
                raise ValueError(f"stage {name!r}: parent {spec.parent!r} is not a stage")
            if isinstance(spec, AdapterStage):
                if spec.base not in names:
                    raise ValueError(f"stage {name!r}: adapter base {spec.base!r} is not a stage")
                if spec.base == name:
                    raise ValueError(f"stage {name!r}: an adapter cannot be its own base")
        if self.output.tokenizer_from is not None and self.output.tokenizer_from not in names:
            raise ValueError(f"output.tokenizer_from {self.output.tokenizer_from!r} is not a stage")
        self._check_reference_stages()
        return self

    def _check_reference_stages(self) -> None:
        """A reference model is compared against, never built on: nothing may descend from it."""
        from medrelease.recipe.stages import AdapterStage

        for name, spec in self.stages.items():
            if spec.reference:
                continue
            above = spec.base if isinstance(spec, AdapterStage) else spec.parent
            if above is not None and self.stages[above].reference:
                raise ValueError(
                    f"stage {name!r} descends from {above!r}, which is marked `reference: true` "
                    "(a comparison-only model); drop `reference` from it or the parent link"
                )
        tok = self.output.tokenizer_from
        if tok is not None and self.stages[tok].reference:
            raise ValueError(
                f"output.tokenizer_from {tok!r} is a reference model (`reference: true`); "
                "take the tokenizer from a stage of this release"
            )

    def stage_lineage(self, name: str) -> list[str]:
        """Stage names from the root down to `name` (following parent / adapter base)."""
        from medrelease.recipe.stages import AdapterStage

        chain: list[str] = []
        cur: str | None = name
        while cur is not None and cur not in chain:
            chain.append(cur)
            spec = self.stages[cur]
            cur = spec.base if isinstance(spec, AdapterStage) else spec.parent
        return list(reversed(chain))


def chat_template_text(recipe: Recipe, recipe_dir: Path) -> str | None:
    tmpl = recipe.output.chat_template
    if tmpl is None or isinstance(tmpl, str):
        return tmpl
    return (recipe_dir / tmpl.file).read_text(encoding="utf-8")
