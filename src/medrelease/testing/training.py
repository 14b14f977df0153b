"""The pieces every small training loop here shares: deterministic torch, encoding, batches.

Used by the demo's stand-in stages (`medrelease.demo.training`) and by the real-model tier's
fine-tunes (`medrelease.testing.realmodels`). It sits in `testing`, below `demo`, so that the
demo imports testing and never the other way round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def deterministic_torch() -> Iterator[None]:
    """One thread and deterministic kernels while training; restore the caller's settings."""
    import torch

    threads = torch.get_num_threads()
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_det)


def encode_text(tokenizer: Any, lines: Sequence[str]) -> list[tuple[list[int], int]]:
    """Plain language-model lines: loss on every token after BOS."""
    return [(tokenizer(line)["input_ids"], 1) for line in lines]


def collate(batch: Sequence[tuple[list[int], int]], pad: int) -> tuple[Any, Any, Any]:
    """Right-pad to the longest row: (ids, labels, attention mask); padding and prompt tokens
    get label -100 (no loss)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, prompt_len) in enumerate(batch):
        n = len(tokens)
        ids[row, :n] = torch.tensor(tokens)
        labels[row, prompt_len:n] = torch.tensor(tokens[prompt_len:])
        mask[row, :n] = 1
    return ids, labels, mask
