"""How a safetensors header is read: the one definition every layer uses.

A safetensors file is `u64 little-endian header length | JSON header | data`; the header maps
each tensor name to its dtype, shape and byte range within the data section (plus an optional
`__metadata__` entry). Reading it costs a few KiB however large the file is, so the dtype rule
(core/compute_dtype.py), the streaming reference (core/upcast.py) and the structural checks of
stages/safetensors_check.py all read headers rather than tensors.

The bounds and JSON checks live here rather than in the stages layer because every reader
needs them: without them a truncated or foreign file surfaces as `struct.error` or a
JSONDecodeError traceback far from the file that caused it, instead of one message naming it.
What the data section must then hold (offsets against shapes and the file size) is the stages
layer's business.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

LENGTH_BYTES = 8  # the u64 that precedes the JSON header
# safetensors' own loader refuses headers over 100 MB (MAX_HEADER_SIZE = 100_000_000 in its
# Rust crate; this MiB bound is a little looser): a larger length means the first 8 bytes are
# not a safetensors header length at all, so nothing that large is read into memory
MAX_HEADER = 100 * 1024 * 1024
# bytes per element of each safetensors dtype tag
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}  # fmt: skip


class SafetensorsProblem(Exception):
    """A file that is not, or no longer, a sound safetensors file (the message names it)."""


def read_header(path: Path) -> tuple[dict[str, dict[str, object]], int]:
    """The parsed JSON header and the offset where the data section starts."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(LENGTH_BYTES)
        if len(head) < LENGTH_BYTES:
            raise SafetensorsProblem(f"{path.name} is {size} bytes: too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or LENGTH_BYTES + n > size:
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
    return header, LENGTH_BYTES + n


def safetensors_headers(folder: Path) -> dict[Path, dict[str, Any]]:
    """Each `*.safetensors` file's header in `folder` (name order); no tensor is read."""
    return {f: read_header(f)[0] for f in sorted(folder.glob("*.safetensors"))}


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files transformers would read: the index's shards, or every file."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        return [folder / n for n in sorted(set(data.get("weight_map", {}).values()))]
    return sorted(folder.glob("*.safetensors"))
