"""Checks that run before any weights are loaded or downloaded.

Each failure names the stage and the fix. The order is cheapest first: existence and
format, then structural integrity, then cross-stage compatibility, then disk space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.disk import require_free_space
from medrelease.core.errors import InputError
from medrelease.core.filecache import file_identity
from medrelease.core.hashing import BackgroundHashes, FileChanged, HashCache
from medrelease.merge.safetensors_check import SafetensorsProblem, check_file, index_shards
from medrelease.merge.sources import ResolvedStage
from medrelease.merge.weight_scan import SCAN_VERSION, scan_files

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
# Config fields that must agree between merged models (layer count only without slices).
SHAPE_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
LAYER_FREE_METHODS = {"passthrough"}  # frankenmerges may change depth


@dataclass
class StageFacts:
    """What preflight learned about one stage (kept for the manifest and the merge)."""

    config: dict[str, Any]
    weight_files: list[str] = field(default_factory=list)
    weight_bytes: int = 0
    pickle: bool = False
    has_tokenizer: bool = False


def read_config(stage: ResolvedStage, folder: Path | None = None) -> dict[str, Any]:
    folder = folder or stage.path
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise InputError(
            f"stage {stage.name!r}: no config.json in {folder}",
            hint="a stage must be a Hugging Face model folder (config.json + weights + tokenizer)",
        )
    try:
        data = json.loads(cfg.read_text())
    except ValueError as exc:
        raise InputError(f"stage {stage.name!r}: {cfg} is not valid JSON ({exc})") from None
    return data


def text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    inner = cfg.get("text_config")
    return {**cfg, **inner} if isinstance(inner, dict) else cfg


def _hub_files(stage: ResolvedStage) -> list[tuple[str, int]]:
    """(filename, size) of a Hub stage at its pinned commit, without downloading weights."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return [
            (p.relative_to(stage.path).as_posix(), p.stat().st_size)
            for p in stage.path.rglob("*")
            if p.is_file()
        ]
    from huggingface_hub import HfApi

    info = HfApi().model_info(stage.source, revision=stage.revision, files_metadata=True)
    return [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]


def check_weights(stage: ResolvedStage, folder: Path | None = None) -> StageFacts:
    folder = folder or stage.path
    facts = StageFacts(config={})
    if stage.kind == "hub" and not stage.weights_ready:
        listing = _hub_files(stage)
        local = False
    else:
        listing = [
            (p.relative_to(folder).as_posix(), p.stat().st_size)
            for p in folder.iterdir()
            if p.is_file()
        ]
        local = True
    names = {n for n, _ in listing}
    safetensors = sorted(n for n, _ in listing if n.endswith(".safetensors"))
    pickles = sorted(
        n for n, _ in listing if n.endswith(PICKLE_SUFFIXES) and "training_args" not in n
    )
    facts.has_tokenizer = any(t in names for t in TOKENIZER_FILES)
    if safetensors:
        facts.weight_files = safetensors
    elif pickles:
        if not stage.allow_pickle:
            raise InputError(
                f"stage {stage.name!r}: weights are pickle files ({', '.join(pickles[:3])}), "
                "which can run arbitrary code when loaded",
                hint="convert them to safetensors, or set `allow_pickle: true` on this stage "
                "if you trust its origin",
            )
        facts.weight_files = pickles
        facts.pickle = True
    else:
        raise InputError(
            f"stage {stage.name!r}: no weight files (*.safetensors) in {stage.path}",
            hint="point the stage at the folder written by save_pretrained",
        )
    sizes = dict(listing)
    facts.weight_bytes = sum(sizes[n] for n in facts.weight_files)
    if local and not facts.pickle:
        index = folder / "model.safetensors.index.json"
        try:
            if index.is_file():
                missing = index_shards(index) - names
                if missing:
                    raise SafetensorsProblem(
                        f"index lists shards that are missing: {', '.join(sorted(missing))}"
                    )
            for name in facts.weight_files:
                check_file(folder / name)
        except SafetensorsProblem as exc:
            raise InputError(
                f"stage {stage.name!r}: {exc}",
                hint="re-download or re-save this checkpoint",
            ) from None
    return facts


def check_adapter(stage: ResolvedStage) -> dict[str, Any]:
    assert stage.adapter is not None
    folder = stage.adapter.path
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise InputError(
            f"stage {stage.name!r}: {folder} has no adapter_config.json",
            hint="an adapter stage must point at a folder saved by peft (save_pretrained)",
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise InputError(f"stage {stage.name!r}: adapter_config.json is invalid ({exc})") from None
    if cfg.get("peft_type") not in ("LORA",):
        raise InputError(
            f"stage {stage.name!r}: adapter type {cfg.get('peft_type')!r} is not supported",
            hint="medrelease materializes LoRA and DoRA adapters (peft_type LORA)",
        )
    has_st = (folder / "adapter_model.safetensors").is_file()
    has_pickle = (folder / "adapter_model.bin").is_file()
    if not has_st:
        if has_pickle and not stage.allow_pickle:
            raise InputError(
                f"stage {stage.name!r}: adapter weights are a pickle file (adapter_model.bin)",
                hint="re-save with safe_serialization=True, or set `allow_pickle: true`",
            )
        if not has_pickle:
            raise InputError(f"stage {stage.name!r}: {folder} has no adapter weights")
    else:
        try:
            check_file(folder / "adapter_model.safetensors")
        except SafetensorsProblem as exc:
            raise InputError(f"stage {stage.name!r}: {exc}") from None
    return cfg


def check_finite_and_hash(
    stages: dict[str, tuple[ResolvedStage, StageFacts]],
    hashes: HashCache,
    advance: Any = None,
) -> BackgroundHashes:
    """Every weight is a finite number: a NaN in one stage would poison the whole merge.

    The scan reads each weight file's raw bits (two files at a time) and must finish before
    mergekit starts. Hashing the same files is bookkeeping, not a check, and costs several
    times the scan (sha256 vs a bit mask): it runs in a thread while mergekit works and is
    collected with `.wait()` after it. Verdicts and digests are remembered per user with the
    file's identity, so a checkpoint reused by the next merge is not read at all.
    """
    shared = hashes.shared
    to_scan: list[tuple[str, ResolvedStage, Path, dict[str, int]]] = []
    to_hash: list[tuple[Path, dict[str, int]]] = []
    for name, (stage, facts) in stages.items():
        if facts.pickle:
            continue  # pickle weights are only opened by mergekit itself, with the user's consent
        for fname in facts.weight_files:
            path = stage.path / fname
            _, ident = file_identity(path)  # before reading: a later change voids the result
            if shared is not None and shared.get(path, FINITE_FACT) == SCAN_VERSION:
                if advance is not None:
                    advance(ident["size"])
            else:
                to_scan.append((name, stage, path, ident))
            if hashes.cached(path) is None:
                to_hash.append((path, ident))
    results = scan_files([p for _, _, p, _ in to_scan], advance, digest=False)
    for name, stage, path, ident in to_scan:  # report in stage order, whatever finished first
        result = results[path]
        if isinstance(result, BaseException):
            raise InputError(
                f"stage {name!r}: {path.name} could not be read ({result})",
                hint="re-download or re-save this checkpoint",
            ) from None
        if result.nonfinite is not None:
            tensor, bad = result.nonfinite
            raise _nonfinite_error(name, tensor, path.name, bad)
        if result.unscanned:  # float formats without a bit-level rule: ask torch
            check_finite_torch(stage, path, result.unscanned)
        if shared is not None:
            shared.put(path, FINITE_FACT, SCAN_VERSION, ident)
    return BackgroundHashes(to_hash, hashes)


def wait_for_input_hashes(pending: BackgroundHashes) -> None:
    """The digests of the inputs, which must still be the files that were checked."""
    try:
        pending.wait()
    except FileChanged as exc:
        raise InputError(
            f"{exc.path} changed while the merge was reading it",
            hint="wait until whatever writes this checkpoint has finished, then re-run",
        ) from None


FINITE_FACT = "finite_scan"


def _nonfinite_error(stage: str, tensor: str, file: str, bad: int) -> InputError:
    return InputError(
        f"stage {stage!r}: tensor {tensor} in {file} has {bad} NaN/Inf values",
        hint="this checkpoint is corrupt (diverged training or a bad save); "
        "use an earlier checkpoint of this stage",
    )


def check_finite_torch(stage: ResolvedStage, path: Path, tensors: list[str]) -> None:
    """The same check through torch, for the few float formats numpy has no view for."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        for key in tensors:
            tensor = fh.get_tensor(key)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise _nonfinite_error(stage.name, key, path.name, bad)


def check_tokenizer_fits(stage: ResolvedStage, facts: StageFacts) -> None:
    """A tokenizer with more tokens than embedding rows produces out-of-range ids."""
    if not facts.has_tokenizer:
        return
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(stage.path))
    except Exception as exc:  # any failure to load is the finding
        raise InputError(
            f"stage {stage.name!r}: its tokenizer does not load: {str(exc).splitlines()[0]}",
            hint="re-save the tokenizer with the checkpoint (tokenizer.save_pretrained)",
        ) from None
    vocab = int(text_config(facts.config).get("vocab_size") or 0)
    if vocab and len(tok) > vocab:
        raise InputError(
            f"stage {stage.name!r}: the tokenizer has {len(tok)} tokens but the model's "
            f"embedding has {vocab} rows",
            hint="this tokenizer belongs to another model, or tokens were added without "
            "resize_token_embeddings; save the matching tokenizer with the checkpoint",
        )


def check_compatible(
    method: str, uses_slices: bool, facts: dict[str, StageFacts], allow_vocab_change: bool
) -> None:
    names = list(facts)
    if len(names) < 2:
        return
    ref_name = names[0]
    ref = text_config(facts[ref_name].config)
    for name in names[1:]:
        cfg = text_config(facts[name].config)
        arch_a, arch_b = ref.get("architectures"), cfg.get("architectures")
        if arch_a != arch_b or ref.get("model_type") != cfg.get("model_type"):
            raise InputError(
                f"stages {ref_name!r} and {name!r} have different architectures "
                f"({arch_a or ref.get('model_type')} vs {arch_b or cfg.get('model_type')})",
                hint="merge only checkpoints fine-tuned from the same base model",
            )
        fields = list(SHAPE_FIELDS)
        if method not in LAYER_FREE_METHODS and not uses_slices:
            fields.append("num_hidden_layers")
        if not allow_vocab_change:
            fields.append("vocab_size")
        for f in fields:
            if ref.get(f) != cfg.get(f):
                hint = "merge only checkpoints fine-tuned from the same base model"
                if f == "vocab_size":
                    hint = (
                        "a stage added tokens: set `tokenizer_source: union` (or `tokenizer:`) "
                        "in merge: so mergekit aligns the embeddings"
                    )
                if f == "num_hidden_layers":
                    hint = "use `slices:` with layer_range (or passthrough) to combine depths"
                raise InputError(
                    f"stages {ref_name!r} and {name!r} differ in {f} "
                    f"({ref.get(f)} vs {cfg.get(f)})",
                    hint=hint,
                )


def check_disk(workdir: Path, needed: int) -> None:
    require_free_space(
        workdir, needed, "the merge", hint="free some space or pass --workdir on a larger disk"
    )
