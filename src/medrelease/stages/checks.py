"""Checks of one stage checkpoint on its own, before anything reads its weights: a model
folder with a config, safetensors weights that are whole (pickle refused unless allowed), a
tokenizer that fits the embedding, a loadable LoRA/DoRA adapter. Used by the merge preflight
and after a Hub download."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.core.errors import InputError
from medrelease.stages.safetensors_check import SafetensorsProblem, check_file, index_shards
from medrelease.stages.sources import ResolvedStage

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


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
