"""A deliberately small, deterministic CPU training loop for the demo's stand-in stages.

Not a trainer library: a few hundred AdamW steps on a ~1.5M-parameter model. Determinism
comes from a fixed seed, a fixed batch order, one intra-op thread (float sums in a fixed
order) and `torch.use_deterministic_algorithms`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.demo.facts import Example
from medrelease.testing.training import collate, deterministic_torch


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    lr: float
    batch_size: int = 16
    seed: int = 0
    weight_decay: float = 0.0


def encode_examples(tokenizer: Any, examples: Sequence[Example]) -> list[tuple[list[int], int]]:
    """Token ids of prompt+completion and the prompt length (the loss skips the prompt).

    Encoded the way lm-eval scores a continuation: the whole string with the tokenizer's
    special tokens (BOS), the prompt's tokens being the prefix of that encoding.
    """
    out: list[tuple[list[int], int]] = []
    for ex in examples:
        whole = tokenizer(ex.prompt + ex.completion)["input_ids"]
        prompt = tokenizer(ex.prompt)["input_ids"]
        out.append((whole, len(prompt)))
    return out


def train(
    model_dir: Path,
    out_dir: Path,
    data: Sequence[tuple[list[int], int]],
    settings: TrainSettings,
    *,
    on_step: Callable[[], None] | None = None,
) -> float:
    """Fine-tune the model in `model_dir` on `data`, save it (with its tokenizer) to `out_dir`.

    Returns the mean loss of the last 10% of steps (for the build log).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with deterministic_torch():
        torch.manual_seed(settings.seed)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        pad = tokenizer.eos_token_id
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        rng = random.Random(settings.seed)
        order: list[int] = []
        losses: list[float] = []
        for _ in range(settings.steps):
            if len(order) < settings.batch_size:
                fresh = list(range(len(data)))
                rng.shuffle(fresh)
                order += fresh
            batch = [data[i] for i in order[: settings.batch_size]]
            del order[: settings.batch_size]
            ids, labels, mask = collate(batch, pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step()
        model.eval()
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)
