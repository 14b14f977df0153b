"""The quantize tests' model; their release (tests/releases.py) and helpers: quanthelpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llama(llama: dict[str, Path]) -> Path:
    # the base keeps tokenizer.model; derived stages are saved with tokenizer.json only, and
    # llama.cpp's converter then builds a different vocabulary (the tokenization check
    # rejects such GGUFs: 3 of 8 probes differ)
    return llama["base"]
