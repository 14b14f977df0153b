"""Evaluation cache: one JSON file per (model content, task fingerprint, settings).

A baseline whose weights, task and settings did not change is never evaluated twice;
changing e.g. `limit` for one task re-evaluates that task only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medrelease.core.atomic import atomic_write_json
from medrelease.core.hashing import digest_of

CACHE_VERSION = 1


def cache_key(model_hash: str, task_fingerprint: str, settings: dict[str, Any]) -> str:
    return digest_of(
        {"v": CACHE_VERSION, "model": model_hash, "task": task_fingerprint, "settings": settings}
    )


class EvalCache:
    def __init__(self, folder: Path | None):
        self.folder = folder

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged entry is just a miss
        return data.get("outcome") if isinstance(data, dict) else None

    def put(self, key: str, outcome: dict[str, Any], material: dict[str, Any]) -> None:
        path = self._path(key)
        if path is not None:
            atomic_write_json(path, {"key": material, "outcome": outcome})
