"""The input scan reads each weight file just behind mergekit, from the page cache.

The merge step scans its inputs for NaN/Inf and hashes them in a thread while mergekit
merges them. Read independently, the inputs of a 7B merge (two stages, 30 GB, on a 24 GiB
machine) came from disk twice, and the scan's reads competed with mergekit's: mergekit took
54.7 s beside the scan against 40.4 s alone. `MergekitFollower` lets the scan read a file only
up to the first tensor (in file order) that mergekit has not loaded yet, so each byte is read
from disk once, by mergekit, and the scan finds it in the page cache. The merge step follows
only inputs the page cache cannot hold (over half the available memory); smaller ones are
read ahead, which costs nothing there.

It learns what mergekit loaded by wrapping mergekit's `LazyTensorLoader.get_tensor` for the
duration of the merge (nothing in mergekit is changed). When the merge ends, or where the
hook cannot be installed, the scan reads freely: following only changes when it reads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrelease.stages.safetensors_check import read_header


@dataclass
class _Layout:
    """One weight file's tensors in file order, and how many of them, from the front, mergekit
    has loaded: the scan may read up to the first byte of the next one."""

    starts: list[tuple[int, str]]  # (absolute offset, tensor name), in file order
    size: int
    front: int = 0  # index into `starts` of the first tensor not loaded yet

    @classmethod
    def of(cls, path: str) -> _Layout:
        header, data_start = read_header(Path(path))
        starts = sorted(
            (data_start + int(info["data_offsets"][0]), name)  # type: ignore[index]
            for name, info in header.items()
            if name != "__metadata__"
        )
        return cls(starts, os.path.getsize(path))

    def limit(self, loaded: set[str]) -> int:
        while self.front < len(self.starts) and self.starts[self.front][1] in loaded:
            self.front += 1
        return self.starts[self.front][0] if self.front < len(self.starts) else self.size


class MergekitFollower:
    """A `weight_scan.ReadPace` that follows mergekit's loads (of any file: a file's layout is
    read when the scan first asks about it)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._loaded: dict[str, set[str]] = {}  # real path -> tensors mergekit has loaded
        self._layouts: dict[str, _Layout] = {}
        self._released = False

    def limit(self, path: Path) -> int | None:
        real = os.path.realpath(path)
        if real not in self._layouts:
            layout = _Layout.of(real)  # outside the lock: mergekit's loads must not wait on it
            with self._changed:
                self._layouts.setdefault(real, layout)
        with self._changed:
            if self._released:
                return None
            return self._layouts[real].limit(self._loaded.setdefault(real, set()))

    def wait(self, timeout: float) -> None:
        with self._changed:
            if not self._released:
                self._changed.wait(timeout)

    def loaded(self, path: str, tensor: str) -> None:
        with self._changed:
            self._loaded.setdefault(path, set()).add(tensor)
            self._changed.notify_all()

    def release(self) -> None:
        """From now on every file may be read to its end."""
        with self._changed:
            self._released = True
            self._changed.notify_all()

    close = release  # contextlib.closing(follower): released on any way out

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Around mergekit's run: note each tensor it loads; release the scan at the end."""
        try:
            from mergekit.io.lazy_tensor_loader import LazyTensorLoader
        except ImportError:  # a mergekit without it: the scan simply does not wait
            self.release()
            yield
            return
        original = LazyTensorLoader.get_tensor
        real: dict[tuple[str, str], str] = {}  # (base path, shard file) -> real path
        follower = self

        def get_tensor(loader: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            tensor = original(loader, key, *args, **kwargs)
            try:
                index = loader.index
                aliases = kwargs.get("aliases") or (args[1] if len(args) > 1 else None) or []
                name = next((n for n in (key, *aliases) if n in index.tensor_paths), None)
                if name is not None:  # None: a missing tensor mergekit was allowed to skip
                    where = (index.base_path, index.tensor_paths[name])
                    if where not in real:
                        real[where] = os.path.realpath(os.path.join(*where))
                    follower.loaded(real[where], name)
            except Exception:  # bookkeeping must never break the merge: stop following
                follower.release()
            return tensor

        LazyTensorLoader.get_tensor = get_tensor
        try:
            yield
        finally:
            LazyTensorLoader.get_tensor = original
            self.release()
