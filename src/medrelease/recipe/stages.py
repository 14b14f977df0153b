"""How a stage checkpoint is declared in a recipe.

A stage is written either as a string (shorthand) or as a mapping:

    stages:
      base: Qwen/Qwen3-4B-Base@1cfa9a7          # Hub id, optional @revision
      sft: ./checkpoints/sft                    # local folder (relative to the recipe file)
      dora: {adapter: ./checkpoints/dora, base: base}   # LoRA/DoRA adapter on another stage
      dpo: {hub: org/model-dpo, revision: v2, parent: sft, description: "DPO on ..."}
      medgemma: {hub: google/medgemma-4b-it, revision: 9f1c..., reference: true}

A `reference: true` stage is "another model" to compare against in the gates: it is loaded
like any stage (pinned, offline-capable, overridable with --stage) but is never a parent.

A string is a local folder when it starts with ".", "/" or "~" (or names an existing folder);
otherwise it must look like a Hub id (`owner/name[@revision]`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
STAGE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StageCommon(_Strict):
    parent: str | None = Field(
        default=None, description="stage this one was trained from (for the lineage tree)"
    )
    description: str | None = Field(default=None, description="one line for the model card")
    allow_pickle: bool = Field(
        default=False, description="accept pickle (.bin/.pt) weights for this stage"
    )
    trust_remote_code: bool = False
    reference: bool = Field(
        default=False,
        description=(
            "a model used only as a gate baseline (e.g. another team's release): not an input "
            "of the merge, not a parent in the card's lineage, base_model or license check"
        ),
    )


class LocalStage(_StageCommon):
    kind: Literal["local"] = "local"
    path: str


class HubStage(_StageCommon):
    kind: Literal["hub"] = "hub"
    hub: str
    revision: str | None = None

    @model_validator(mode="after")
    def _check_id(self) -> HubStage:
        if not HUB_ID_RE.match(self.hub):
            raise ValueError(f"{self.hub!r} is not a Hub id of the form owner/name")
        return self


class AdapterStage(_StageCommon):
    kind: Literal["adapter"] = "adapter"
    adapter: str = Field(description="local adapter folder or Hub id[@revision] (LoRA or DoRA)")
    base: str = Field(description="name of the stage the adapter applies to")


StageSpec = Annotated[LocalStage | HubStage | AdapterStage, Field(discriminator="kind")]


def split_revision(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        repo, rev = ref.rsplit("@", 1)
        return repo, rev or None
    return ref, None


def looks_local(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or ref.startswith("file:")


def normalize_stage(value: Any) -> Any:
    """Turn the shorthand and implicit forms into a mapping with an explicit `kind`."""
    if isinstance(value, str):
        if looks_local(value):
            return {"kind": "local", "path": value.removeprefix("file:")}
        repo, rev = split_revision(value)
        return {"kind": "hub", "hub": repo, "revision": rev}
    if isinstance(value, dict) and "kind" not in value:
        if "adapter" in value:
            return {"kind": "adapter", **value}
        if "hub" in value:
            hub = value["hub"]
            if isinstance(hub, str) and "@" in hub and "revision" not in value:
                repo, rev = split_revision(hub)
                return {"kind": "hub", **value, "hub": repo, "revision": rev}
            return {"kind": "hub", **value}
        if "path" in value:
            return {"kind": "local", **value}
    return value
