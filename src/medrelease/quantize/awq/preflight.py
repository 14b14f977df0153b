"""AWQ preflight: which layers W4A16 will quantize, and a group size that fits them all.

Run before any quantization work (quantize step) and by `medrelease validate` from a stage's
config.json, so a shape problem shows in seconds, not after the GGUF work.

The model is built from config.json on the meta device (no weights, no memory), its Linear
modules are matched with compressed-tensors' own `match_named_modules` (the function
llm-compressor uses) against targets ["Linear"] and the recipe's ignore list. Each targeted
layer's input features must be a multiple of the group size.

Group sizes vLLM runs (compressed-tensors W4A16 / AWQ kernels, vllm/model_executor/layers/
quantization): Marlin accepts -1 (channelwise), 32, 64, 128 (MARLIN_SUPPORTED_GROUP_SIZES);
Machete (Hopper) -1, 64, 128 for fp16/bf16 activations. `auto` picks the largest of 128, 64,
32 that divides every targeted layer; when none does, the fix is named (group_size: -1, or
ignoring the odd layers). Marlin also needs in_features % 128 and out_features % 64 per
tensor-parallel shard; layers that miss that are reported as a note (vLLM then picks another
kernel or refuses the layer), not an error: it depends on the serving setup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.errors import InputError, RecipeError

TARGETS = ("Linear",)
AUTO_ORDER = (128, 64, 32)  # largest first: fewer scales, what the W4A16 presets use
VLLM_GROUP_SIZES = (-1, 32, 64, 128)  # vLLM's Marlin kernel (MARLIN_SUPPORTED_GROUP_SIZES)
MARLIN_MIN_K = 128  # GPTQ_MARLIN_MIN_THREAD_K: in_features per shard
MARLIN_MIN_N = 64  # GPTQ_MARLIN_MIN_THREAD_N: out_features per shard
SHOWN = 3  # layers named in a message


@dataclass(frozen=True)
class LinearShape:
    name: str
    in_features: int
    out_features: int


@dataclass
class AwqPlan:
    """What the AWQ step will quantize and with which group size."""

    group_size: int  # -1 = channelwise
    layers: list[LinearShape]
    source: str  # the config.json the plan was computed from
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def record(self) -> dict[str, Any]:
        return {
            "group_size": self.group_size,
            "layers": len(self.layers),
            "source": self.source,
            "notes": self.notes,
        }


def targeted_linears(config_json: Path, ignore: list[str]) -> list[LinearShape]:
    """The Linear modules W4A16 targets in the model config.json describes (minus `ignore`)."""
    import torch
    from compressed_tensors.utils import match_named_modules
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(config_json.parent))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read {config_json} for the AWQ preflight ({exc})") from None
    try:
        with torch.device("meta"):  # shapes only: no memory, no weights read
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError, ImportError, RuntimeError) as exc:
        raise InputError(
            f"transformers cannot build the model {config_json} describes ({exc}); "
            "llm-compressor's AWQ needs it",
            hint="drop quantize.awq for this model, or use an architecture transformers knows",
        ) from None
    return [
        LinearShape(name, int(module.in_features), int(module.out_features))
        for name, module in match_named_modules(model, list(TARGETS), list(ignore))
        if isinstance(module, torch.nn.Linear)
    ]


def _names(layers: list[LinearShape]) -> str:
    shown = ", ".join(f"{x.name} ({x.in_features})" for x in layers[:SHOWN])
    return shown + (f" and {len(layers) - SHOWN} more" if len(layers) > SHOWN else "")


def _misfits(layers: list[LinearShape], group: int) -> list[LinearShape]:
    return [x for x in layers if group != -1 and x.in_features % group]


def choose_group_size(layers: list[LinearShape], requested: int | str) -> int:
    """The recipe's group size if every targeted layer fits it, else the best that does."""
    fitting = [g for g in AUTO_ORDER if not _misfits(layers, g)]
    if requested == "auto":
        if fitting:
            return fitting[0]
        odd = _misfits(layers, AUTO_ORDER[-1])
        raise RecipeError(
            f"AWQ: no group size vLLM runs (128, 64, 32) divides the input features of "
            f"{len(odd)} targeted layer(s): {_names(odd)}",
            where="quantize.awq.group_size",
            hint="set `quantize.awq.group_size: -1` (channelwise: one scale per output row, "
            "lower quality), or add those layers to quantize.awq.ignore",
        )
    group = int(requested)
    odd = _misfits(layers, group)
    if odd:
        fix = (
            f"set `quantize.awq.group_size: {fitting[0]}` (the largest vLLM-supported size "
            "that divides every targeted layer) or `auto`"
            if fitting
            else "set `quantize.awq.group_size: -1` (channelwise), or add those layers to "
            "quantize.awq.ignore"
        )
        raise RecipeError(
            f"AWQ group_size {group} does not divide the input features of {len(odd)} "
            f"targeted layer(s): {_names(odd)}",
            where="quantize.awq.group_size",
            hint=fix,
        )
    return group


def marlin_notes(layers: list[LinearShape]) -> list[str]:
    """Layers vLLM's Marlin kernel cannot take at tensor-parallel size 1 (a note, not an error)."""
    odd = [x for x in layers if x.in_features % MARLIN_MIN_K or x.out_features % MARLIN_MIN_N]
    if not odd:
        return []
    shown = ", ".join(f"{x.name} ({x.in_features}->{x.out_features})" for x in odd[:SHOWN])
    more = f" and {len(odd) - SHOWN} more" if len(odd) > SHOWN else ""
    return [
        f"vLLM's Marlin kernel needs in_features % {MARLIN_MIN_K} == 0 and out_features % "
        f"{MARLIN_MIN_N} == 0; {len(odd)} layer(s) miss that ({shown}{more}): vLLM uses "
        "another W4A16 kernel for them or refuses to load (depends on the GPU and "
        "tensor-parallel size)"
    ]


def awq_preflight(config_json: Path, ignore: list[str], group_size: int | str) -> AwqPlan:
    """Raise RecipeError (exit 2) with the fix when the scheme cannot fit; else the plan."""
    if not config_json.is_file():
        raise InputError(f"no config.json at {config_json} for the AWQ preflight")
    layers = targeted_linears(config_json, ignore)
    if not layers:
        raise RecipeError(
            f"AWQ would quantize no layer of {config_json.parent}: every Linear module "
            f"matches quantize.awq.ignore {ignore}",
            where="quantize.awq.ignore",
            hint="ignore only the layers that must stay in full precision (e.g. lm_head)",
        )
    group = choose_group_size(layers, group_size)
    return AwqPlan(group, layers, str(config_json), marlin_notes(layers))


_PLANS: dict[tuple[str, int, int, tuple[str, ...], int | str], AwqPlan] = {}


def located(err: RecipeError, loaded: Any) -> RecipeError:
    """Prefix a preflight error's recipe key with the recipe file and line it comes from."""
    if loaded is not None and err.where and err.where.startswith("quantize."):
        err.where = f"{loaded.where(tuple(err.where.split('.')))} ({err.where})"
    return err


def preflight_merged(
    merged: Path, ignore: list[str], group_size: int | str, *, loaded: Any = None
) -> AwqPlan | None:
    """The plan for the merged model (None when there is none yet: the step says so itself).

    Computed once per config.json content and settings: the quantize step calls it before any
    quant work, then quantize_awq and check_awq reuse the same plan.
    """
    config_json = merged / "config.json"
    if not config_json.is_file():
        return None
    st = config_json.stat()
    key = (str(config_json.resolve()), st.st_mtime_ns, st.st_size, tuple(ignore), group_size)
    if key not in _PLANS:
        try:
            _PLANS[key] = awq_preflight(config_json, ignore, group_size)
        except RecipeError as err:
            raise located(err, loaded) from None
    return _PLANS[key]


def _model_stage(recipe: Any) -> str | None:
    """The stage whose shapes the merged model has: the merge's base_model, else its first
    model, else the first stage that is not a reference (merge preflight makes them agree)."""
    stages = recipe.stages
    merge = recipe.merge if isinstance(recipe.merge, dict) else {}
    candidates: list[Any] = [merge.get("base_model")]
    candidates += [m.get("model") for m in merge.get("models") or [] if isinstance(m, dict)]
    candidates += [n for n, spec in stages.items() if not spec.reference]
    name = next((c for c in candidates if isinstance(c, str) and c in stages), None)
    seen: set[str] = set()
    while name is not None and stages[name].kind == "adapter" and name not in seen:
        seen.add(name)  # an adapter has its base stage's shapes
        name = stages[name].base
    return name


def _stage_config(loaded: Any, name: str) -> Path | None:
    """A stage's config.json when it is on this machine (a folder, or the Hub cache); no
    download: validate stays offline and fast."""
    spec = loaded.recipe.stages[name]
    if spec.kind == "local":
        folder = Path(spec.path).expanduser()
        path = (folder if folder.is_absolute() else loaded.base_dir / folder) / "config.json"
        return path if path.is_file() else None
    if spec.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        from medrelease.stages.sources import hub_cache_dir

        hit = try_to_load_from_cache(
            spec.hub, "config.json", revision=spec.revision, cache_dir=hub_cache_dir()
        )
        return Path(hit) if isinstance(hit, str) else None
    return None


def recipe_preflight(loaded: Any) -> dict[str, Any] | None:
    """`medrelease validate`: the AWQ preflight from a stage's config.json (seconds, no
    weights). None without quantize.awq; raises RecipeError when the scheme cannot fit."""
    quantize = loaded.recipe.quantize
    awq = quantize.awq if quantize is not None else None
    if awq is None:
        return None
    name = _model_stage(loaded.recipe)
    config_json = _stage_config(loaded, name) if name is not None else None
    if config_json is None:
        return {
            "checked": False,
            "detail": f"stage {name!r} has no config.json on this machine; the AWQ shapes are "
            "checked when `medrelease quantize` starts",
        }
    try:
        plan = awq_preflight(config_json, list(awq.ignore), awq.group_size)
    except RecipeError as err:
        raise located(err, loaded) from None
    return {"checked": True, "stage": name, **plan.record()}
