"""One safetensors header reader (core/safetensors_header.py) for every layer.

Compared with the safetensors library's own view of the same file, and checked to turn a
truncated or foreign file into one message naming it, whichever layer reads it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from medrelease.core import compute_dtype
from medrelease.core.safetensors_header import (
    SafetensorsProblem,
    read_header,
    safetensors_headers,
)
from medrelease.stages import safetensors_check


def _save(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file(
        {
            "embed.weight": np.zeros((7, 3), dtype=np.float32),
            "norm.weight": np.ones((3,), dtype=np.float16),
        },
        str(path),
        metadata={"format": "np"},
    )
    return path


def test_header_matches_the_safetensors_library(tmp_path):
    from safetensors import safe_open

    path = _save(tmp_path / "model.safetensors")
    header, data_start = read_header(path)
    with safe_open(str(path), framework="np") as st:
        names = set(st.keys())
        shapes = {n: list(st.get_slice(n).get_shape()) for n in names}
        metadata = st.metadata()
    assert {n for n in header if n != "__metadata__"} == names
    assert {n: header[n]["shape"] for n in names} == shapes
    assert header["__metadata__"] == metadata
    # the data section starts right after the header and holds exactly the tensors' bytes
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert data_start == 8 + n
    end = max(int(header[t]["data_offsets"][1]) for t in names)
    assert data_start + end == path.stat().st_size


def test_folder_headers_in_name_order(tmp_path):
    b = _save(tmp_path / "b.safetensors")
    a = _save(tmp_path / "a.safetensors")
    (tmp_path / "notes.txt").write_text("not weights")
    assert list(safetensors_headers(tmp_path)) == [a, b]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:5], "too short to be safetensors"),
        (lambda raw: raw[:40], "does not fit in a 40-byte file"),
        (lambda raw: struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
        (lambda raw: struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_damaged_file_is_one_message_naming_it(tmp_path, damage, message):
    path = _save(tmp_path / "model.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SafetensorsProblem) as info:
        read_header(path)
    assert str(info.value).startswith("model.safetensors")
    assert message in str(info.value)
    # the core layer's dtype rule reads through the same reader: the same message, not a
    # struct.error or JSONDecodeError from a reader of its own
    with pytest.raises(SafetensorsProblem) as info2:
        compute_dtype.weights_info(tmp_path)
    assert str(info2.value) == str(info.value)


def test_stages_checks_use_the_core_reader():
    # one definition: the stages module re-exports the core reader, its error and dtype widths
    assert safetensors_check.read_header is read_header
    assert safetensors_check.SafetensorsProblem is SafetensorsProblem
    assert compute_dtype.safetensors_headers is safetensors_headers


def test_weights_info_counts_from_headers(tmp_path):
    _save(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    info = compute_dtype.weights_info(tmp_path)
    assert info.n_params == 7 * 3 + 3
    assert info.dtype == "float32"  # most weight bytes are F32, whatever config.json says
