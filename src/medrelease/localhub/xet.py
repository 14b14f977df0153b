"""Turn files that hf_xet uploaded into the local CAS folder back into plain blobs.

The client uploads Xet files by writing chunks ("xorbs") and a shard (`*.mdb`) into the
folder named by `casUrl: local://DIR`; the commit then names each file only by sha256. Like
the real Hub, the server finds the file in the shards (file hash + sha256 metadata), then
reconstructs the bytes with hf_xet itself and checks the sha256 before storing the blob.

Shard layout (xet-core `mdb_shard`): a 48-byte header, then file-info records of 48 bytes:
a file header (hash, flags u32, entry count u32, 8 unused), `count` segment entries,
`count` verification entries if flag bit 31, one metadata entry (sha256) if flag bit 30.
The section ends with a record whose hash is all 0xff. Hashes are four little-endian u64,
written in hex word by word.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from medrelease.localhub.store import Blobs, StoreError

RECORD = 48
HEADER = 48
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
END_MARKER = b"\xff" * 32


def xet_hex(raw: bytes) -> str:
    """hex form of a 32-byte Xet hash as hf_xet prints it (each u64 word big-endian)."""
    return "".join(f"{w:016x}" for w in struct.unpack("<4Q", raw))


@dataclass(frozen=True)
class XetFile:
    xet_hash: str
    sha256: str
    size: int


def parse_shard(data: bytes) -> list[XetFile]:
    """Files described in one shard that carry a sha256 (uploads by huggingface_hub do)."""
    files: list[XetFile] = []
    pos = HEADER
    while pos + RECORD <= len(data):
        raw_hash = data[pos : pos + 32]
        if raw_hash == END_MARKER:
            break
        flags, count = struct.unpack_from("<II", data, pos + 32)
        pos += RECORD
        size = 0
        for i in range(count):  # segment entries: unpacked_segment_bytes at offset 36
            (seg_bytes,) = struct.unpack_from("<I", data, pos + i * RECORD + 36)
            size += seg_bytes
        pos += count * RECORD
        if flags & FLAG_VERIFICATION:
            pos += count * RECORD
        if flags & FLAG_METADATA_EXT:
            sha = xet_hex(data[pos : pos + 32])
            pos += RECORD
            files.append(XetFile(xet_hex(raw_hash), sha, size))
    return files


def find_xet_file(xet_dir: Path, sha256: str) -> XetFile | None:
    for shard in sorted(xet_dir.rglob("*.mdb")):
        try:
            for f in parse_shard(shard.read_bytes()):
                if f.sha256 == sha256:
                    return f
        except (OSError, struct.error):
            continue  # a shard being written by a concurrent upload
    return None


def materialize(xet_dir: Path, blobs: Blobs, sha256: str, size: int) -> bool:
    """Rebuild the blob `sha256` from the Xet CAS; False if no shard knows it."""
    found = find_xet_file(xet_dir, sha256)
    if found is None:
        return False
    if found.size != size:
        raise StoreError(400, f"Xet file {sha256} has size {found.size}, commit says {size}")
    import hf_xet

    tmp = blobs.temp_path()
    session = hf_xet.XetSession()
    with session.new_file_download_group(endpoint=f"local://{xet_dir.resolve()}") as group:
        group.start_download_file(hf_xet.XetFileInfo(found.xet_hash, found.size), str(tmp))
    blobs.put_file(tmp, sha256)
    return True
