"""Build tiny models of real architectures (llama, qwen2, qwen3, arcee) with real tokenizers.

Dimensions are chosen so the real tools' constraints hold: hidden size 256 (K-quants need
rows divisible by 256; AWQ group size 128 divides it), and the SentencePiece vocabulary of
the llama model converts to GGUF without the BPE pre-tokenizer check.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.testing import corpus

ARCHS = ("llama", "qwen2", "qwen3", "arcee")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ALPACA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% else %}{{ message['content'] + '\\n\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    arch: str = "llama"
    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 512
    seed: int = 0
    # "auto": SentencePiece for llama, byte-level BPE for the others (as the real families).
    # "sentencepiece" gives stand-ins llama.cpp's converter accepts (it cannot identify a BPE
    # tokenizer trained from scratch), except qwen2: transformers 5 always loads a qwen2
    # folder's tokenizer as Qwen2Tokenizer (byte-level BPE).
    tokenizer: str = "auto"


def build_sentencepiece_tokenizer(folder: Path, vocab_size: int = 512) -> None:
    """A llama-style SentencePiece tokenizer (tokenizer.model + LlamaTokenizer config)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.sentences(2000)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        minloglevel=2,
        num_threads=1,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "clean_up_tokenization_spaces": False,
                "legacy": False,
                "model_max_length": 512,
            },
            indent=2,
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2)
    )


def build_bpe_tokenizer(folder: Path, vocab_size: int = 512) -> None:
    """A Qwen-style byte-level BPE tokenizer with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.sentences(2000), trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "add_bos_token": False,
                "clean_up_tokenization_spaces": False,
                "model_max_length": 512,
                "chat_template": CHATML_TEMPLATE,
            },
            indent=2,
        )
    )


def _config(spec: TinySpec, tok: Any) -> Any:
    from transformers import AutoConfig

    common: dict[str, Any] = {
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "vocab_size": len(tok),
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if spec.arch == "qwen3":
        common["head_dim"] = spec.hidden_size // spec.num_attention_heads
    tokens = {k: common.pop(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    cfg = AutoConfig.for_model(spec.arch, **common)
    for key, value in tokens.items():  # None must override the architecture's defaults
        setattr(cfg, key, value)
    return cfg


def build_tiny_model(
    folder: Path, spec: TinySpec | None = None, *, tokenizer_from: Path | None = None
) -> Path:
    """Write a randomly initialised tiny model (safetensors + tokenizer) to `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    spec = spec or TinySpec()
    if spec.arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {spec.arch!r}; choose from {ARCHS}")
    folder.mkdir(parents=True, exist_ok=True)
    tok_dir = tokenizer_from or folder
    if tokenizer_from is None:
        if spec.tokenizer not in ("auto", "sentencepiece", "bpe"):
            raise ValueError(f"unknown tokenizer kind {spec.tokenizer!r}")
        use_sp = spec.tokenizer == "sentencepiece" or (
            spec.tokenizer == "auto" and spec.arch == "llama"
        )
        if use_sp:
            build_sentencepiece_tokenizer(folder, spec.vocab_size)
        else:
            build_bpe_tokenizer(folder, spec.vocab_size)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    cfg = _config(spec, tok)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # wider init than the default so models differ visibly
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.05)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def derive_stage(base: Path, out: Path, *, seed: int, scale: float = 0.02) -> Path:
    """A "fine-tuned" stage: the base plus seeded, structured noise (same arch and tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    if (base / "tokenizer.model").is_file():  # transformers 5 saves tokenizer.json only
        shutil.copyfile(base / "tokenizer.model", out / "tokenizer.model")
    return out


def make_adapter(base: Path, out: Path, *, dora: bool = False, seed: int = 0, r: int = 8) -> Path:
    """A LoRA (or DoRA) adapter with non-zero weights on `base`, saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
        use_dora=dora,
        init_lora_weights=False,  # random, non-zero B so the adapter changes the model
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(0.5)
    peft_model.save_pretrained(str(out))
    return out
