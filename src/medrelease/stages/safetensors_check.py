"""Cheap structural checks of weight files, done before anything is loaded.

A safetensors file is `u64 header length | JSON header | data`; the header lists every
tensor's byte range. A truncated download or a file cut short by a full disk is caught by
comparing the end of the last range with the file size, without reading the data.

How the header itself is read (length bounds, JSON validity, the error that names the file)
is defined once in core/safetensors_header.py, which the core layer's readers use too; this
module adds what a sound data section must satisfy. `read_header`, `SafetensorsProblem` and
the dtype widths are re-exported so that stage checks and their callers import one place.
"""

from __future__ import annotations

import json
from pathlib import Path

from medrelease.core.safetensors_header import DTYPE_BYTES, SafetensorsProblem, read_header

__all__ = [
    "DTYPE_BYTES",
    "SafetensorsProblem",
    "check_file",
    "index_shards",
    "read_header",
]


def check_file(path: Path) -> int:
    """Validate one file's structure; return the number of parameters it holds."""
    header, data_start = read_header(path)
    size = path.stat().st_size
    end = 0
    params = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or "data_offsets" not in info:
            raise SafetensorsProblem(f"{path.name}: tensor {name!r} has no data_offsets")
        offsets: list[int] = list(info["data_offsets"])  # type: ignore[call-overload]
        start, stop = int(offsets[0]), int(offsets[1])
        shape = info.get("shape", [])
        count = 1
        for d in shape:  # type: ignore[attr-defined]
            count *= int(d)
        width = DTYPE_BYTES.get(str(info.get("dtype")), 0)
        if width and stop - start != count * width:
            raise SafetensorsProblem(
                f"{path.name}: tensor {name!r} byte range does not match its shape/dtype"
            )
        params += count
        end = max(end, int(stop))
    if data_start + end != size:
        raise SafetensorsProblem(
            f"{path.name} is {size} bytes but its header describes {data_start + end} "
            "(truncated or corrupted download)"
        )
    return params


def index_shards(index_path: Path) -> set[str]:
    try:
        data = json.loads(index_path.read_text())
        return set(data["weight_map"].values())
    except (ValueError, KeyError, TypeError):
        raise SafetensorsProblem(f"{index_path.name} is not a valid weight index") from None
