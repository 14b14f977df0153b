"""A GGUF's files and their sizes: llama.cpp's shard names, size estimates, the disk check.

Splitting for the Hub's file size limit uses llama.cpp's own split format: the converter writes
shards (`--split-max-size`) and the quantizer keeps them (`keep_split`), so every quantized
shard is no larger than its high-precision shard.
"""

from __future__ import annotations

import re
from pathlib import Path

from medrelease.core.disk import require_free_space
from medrelease.quantize.gguf.quant_types import GgufType

SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def gguf_files(folder: Path, stem: str) -> list[Path]:
    """`<stem>.gguf` or its shards `<stem>-0000i-of-0000n.gguf`, in order."""
    single = folder / f"{stem}.gguf"
    if single.is_file():
        return [single]
    shards = sorted(p for p in folder.glob(f"{stem}-*-of-*.gguf") if SHARD_RE.search(p.name))
    return shards


def remove_partial(out_dir: Path, stem: str) -> None:
    for f in gguf_files(out_dir, stem):
        f.unlink(missing_ok=True)


def estimated_size(intermediate_bytes: int, intermediate_bpw: float, qtype: GgufType) -> int:
    return int(intermediate_bytes * qtype.bpw / intermediate_bpw)


def check_free_space(folder: Path, needed: int, what: str) -> None:
    require_free_space(
        folder,
        needed,
        what,
        hint="free disk space, use a --workdir on a larger disk, or list fewer types",
    )


def parameter_count(merged: Path) -> int:
    """Number of weights, read from safetensors headers (no tensor is loaded)."""
    import math

    from safetensors import safe_open

    total = 0
    for f in sorted(merged.glob("*.safetensors")):
        with safe_open(str(f), framework="np") as st:
            for name in st.keys():  # noqa: SIM118 (safe_open is not a dict)
                total += math.prod(st.get_slice(name).get_shape())
    return total
