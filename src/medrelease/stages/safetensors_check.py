"""Cheap structural checks of weight files, done before anything is loaded.

A safetensors file is `u64 header length | JSON header | data`; the header lists every
tensor's byte range. A truncated download or a file cut short by a full disk is caught by
comparing the end of the last range with the file size, without reading the data.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_HEADER = 100 * 1024 * 1024
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}  # fmt: skip


class SafetensorsProblem(Exception):
    pass


def read_header(path: Path) -> tuple[dict[str, dict[str, object]], int]:
    """The parsed JSON header and where the data section starts."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise SafetensorsProblem(f"{path.name} is {size} bytes: too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise SafetensorsProblem(
                f"{path.name}: header length {n} does not fit in a {size}-byte file "
                "(truncated or not safetensors)"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        raise SafetensorsProblem(f"{path.name}: header is not valid JSON (corrupt file)") from None
    if not isinstance(header, dict):
        raise SafetensorsProblem(f"{path.name}: header is not a JSON object")
    return header, 8 + n


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
