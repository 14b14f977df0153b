"""What the cards depend on: the single definition used by the step, `release` and `status`."""

from __future__ import annotations

from typing import Any

from medrelease.card.names import hub_url
from medrelease.core.hashing import HashCache, sha256_file
from medrelease.core.inputs import StepInputs, outputs_digest, referenced_files, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import CARD, GATE, MERGE, QUANTIZE
from medrelease.stages.identity import portable_specs

# lm_eval: the card reads its task definitions (dataset ids, splits) for model-index
TOOLS = ("jinja2", "huggingface_hub", "matplotlib", "lm_eval")


def template_digests(loaded: LoadedRecipe) -> dict[str, str]:
    """card -> digest of every template it can reach: the recipe's template, what it extends
    or includes from its folder, and the shipped templates."""
    from medrelease.card.config import CardConfig
    from medrelease.card.templates import SHIPPED, make_renderer, template_digest, template_path

    cfg = loaded.recipe.card or CardConfig()
    chosen = {"model": cfg.template, "gguf": cfg.gguf_template, "awq": cfg.awq_template}
    out = {}
    for name, value in chosen.items():
        user = template_path(loaded, value, name)
        renderer = make_renderer(user_template=user, filters={})
        out[name] = template_digest(renderer, user.name if user else SHIPPED[name])
    return out


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    card = section(loaded, "card")
    r = loaded.recipe
    return {
        "recipe": {
            "release": section(loaded, "release"),
            "card": card,
            "output": section(loaded, "output"),
            # lineage, licenses and reference models in the card come from the stages
            # (their recipe keys; where a local folder sits is not in the card)
            "stages": portable_specs(loaded, list(r.stages)),
        },
        "files": referenced_files(card, loaded.base_dir, cache),
        "templates": template_digests(loaded),
        # the gate's task files ship in the repo as eval/: a changed task file that leaves
        # the gate report byte-identical must still re-render
        "eval_files": referenced_files(section(loaded, "gates"), loaded.base_dir, cache),
        # the cards' links point at the Hub the release goes to (HF_ENDPOINT)
        "endpoint": hub_url(),
        "upstream": {s.name: outputs_digest(manifest, s.name) for s in (MERGE, GATE, QUANTIZE)},
        # "How the merge was chosen" is read from the sweep's report, when there is one
        "sweep_report": (
            sha256_file(paths.sweep_report, cache) if paths.sweep_report.is_file() else None
        ),
    }


INPUTS = StepInputs(CARD, TOOLS, _components)  # standalone: always re-rendered (seconds)
