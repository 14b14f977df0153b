"""Synthetic llama checkpoints of a chosen size, written straight to safetensors.

Random weights are enough to time a merge or a conversion; building them through
transformers would take minutes per gigabyte. The tokenizer is medrelease's tiny SentencePiece
one, so preflight, verification and llama.cpp's converter accept the folder like a real stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HIDDEN = 2048
INTERMEDIATE = 5632
HEADS = 16


def layer_bytes(hidden: int, intermediate: int) -> int:
    return 4 * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden)


def build_stage(
    folder: Path, *, target_mib: int, seed: int, tokenizer: Path, hidden: int = HIDDEN
) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    if (folder / "model.safetensors").is_file():
        return folder
    intermediate = INTERMEDIATE * hidden // HIDDEN
    heads = max(1, hidden // 128)
    vocab = 512
    fixed = 4 * (2 * vocab * hidden + hidden)
    layers = max(1, round((target_mib * 2**20 - fixed) / layer_bytes(hidden, intermediate)))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, tmp / name)
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    tensors = {
        "model.embed_tokens.weight": w(vocab, hidden),
        "lm_head.weight": w(vocab, hidden),
        "model.norm.weight": np.ones(hidden, dtype=np.float32),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = np.ones(hidden, dtype=np.float32)
        tensors[p + "post_attention_layernorm.weight"] = np.ones(hidden, dtype=np.float32)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[p + f"self_attn.{proj}.weight"] = w(hidden, hidden)
        tensors[p + "mlp.gate_proj.weight"] = w(intermediate, hidden)
        tensors[p + "mlp.up_proj.weight"] = w(intermediate, hidden)
        tensors[p + "mlp.down_proj.weight"] = w(hidden, intermediate)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": vocab,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "hidden_act": "silu",
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2)
    )
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def tokenizer_folder(cache: Path) -> Path:
    from medrelease.testing.tiny import build_sentencepiece_tokenizer

    folder = cache / "tokenizer"
    if not (folder / "tokenizer.model").is_file():
        build_sentencepiece_tokenizer(folder, 512)
    return folder


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
