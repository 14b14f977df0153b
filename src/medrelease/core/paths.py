"""The workdir layout: the contract between steps, tests and users.

<workdir>/<release>/
  merged/                 merged model (Hugging Face folder)
  gates/report.json       gate results
  quant/gguf/, quant/awq/ quantized models
  card/                   rendered model cards
  manifest.json           the release record
  stages/                 materialized adapter stages (cache)
  .cache/                 hash and evaluation caches
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = Path("build")


@dataclass(frozen=True)
class ReleasePaths:
    workdir: Path
    release: str

    @property
    def root(self) -> Path:
        return self.workdir / self.release

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def gates(self) -> Path:
        return self.root / "gates"

    @property
    def gate_report(self) -> Path:
        return self.gates / "report.json"

    @property
    def sweep(self) -> Path:
        """`medrelease sweep`'s study, scratch space and report (never the release's merged/)."""
        return self.root / "sweep"

    @property
    def sweep_report(self) -> Path:
        return self.sweep / "report.json"

    @property
    def quant(self) -> Path:
        return self.root / "quant"

    @property
    def card(self) -> Path:
        return self.root / "card"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    @property
    def cache(self) -> Path:
        return self.root / ".cache"

    @property
    def hash_cache(self) -> Path:
        return self.cache / "sha256.json"

    def rel(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()
