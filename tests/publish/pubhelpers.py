"""A complete release folder built by hand, for the publish tests (the local Hub is `hub` in
tests/conftest.py).

The release folder holds a real tiny model in merged/, a well-formed gate report, a GGUF and
an AWQ quant (one GGUF type rejected, so it must never be published), cards, and manifest
records written exactly as the contracts describe, with real sha256 of every file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import write_recipe

RELEASE = "tiny-release"
REPO = "medrelease-tests/tiny-release"


@dataclass
class Release:
    recipe: Path
    workdir: Path

    @property
    def root(self) -> Path:
        return self.workdir / RELEASE

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "manifest.json").read_text())

    def write_manifest(self, data: dict[str, Any]) -> None:
        (self.root / "manifest.json").write_text(json.dumps(data, indent=2))

    def load(self) -> Any:
        from medrelease.pipeline.recipes import load_recipe

        return load_recipe(self.recipe)

    def set_gate(self, passed: bool) -> None:
        """Rewrite the gate report and its manifest record with a given verdict."""
        from medrelease.core.hashing import file_record

        report_path = self.root / "gates" / "report.json"
        report = json.loads(report_path.read_text())
        report["passed"] = passed
        report["rules"][0]["passed"] = passed
        report_path.write_text(json.dumps(report, indent=2))
        data = self.manifest()
        data["steps"]["gate"]["passed"] = passed
        data["steps"]["gate"]["status"] = "done" if passed else "failed"  # as gate/step.py does
        data["steps"]["gate"]["report"] = {"gates/report.json": file_record(report_path)}
        self.write_manifest(data)


def _records(root: Path, rels: list[str]) -> dict[str, dict[str, Any]]:
    from medrelease.core.hashing import file_record

    return {rel: file_record(root / rel) for rel in sorted(rels)}


def build_release(tmp: Path, model: Path) -> Release:
    from medrelease.core.hashing import digest_of

    workdir = tmp / "build"
    root = workdir / RELEASE
    shutil.copytree(model, root / "merged")
    merged = sorted(f"merged/{p.name}" for p in (root / "merged").iterdir() if p.is_file())

    (root / "gates").mkdir(parents=True)
    report = {
        "schema_version": 1,
        "passed": True,
        "candidate": "merged",
        "models": {"merged": {"kind": "merged", "path": "merged", "content_hash": "x"}},
        "harness": {"lm_eval": "0.4.13", "backend": "hf", "batch_size": 8, "device": "cpu"},
        "tasks": {"demo_mcq": {"preset": None, "version": 1, "num_fewshot": 0, "n_samples": 20}},
        "metrics": [
            {"metric": "demo_mcq/acc", "task": "demo_mcq", "subtask": None, "name": "acc",
             "higher_is_better": True, "values": {"merged": 0.6}, "stderr": {"merged": 0.1}},
        ],
        "rules": [
            {"text": "demo_mcq/acc >= 0.30", "metric": "demo_mcq/acc", "kind": "min",
             "threshold": 0.3, "candidate": 0.6, "passed": True, "reason": "0.600 >= 0.300"},
        ],
        "reproduce": ["lm_eval --model hf --tasks demo_mcq"],
    }  # fmt: skip
    (root / "gates" / "report.json").write_text(json.dumps(report, indent=2))

    gguf = root / "quant" / "gguf"
    gguf.mkdir(parents=True)
    # GGUF magic + version, then payload: large enough to go through LFS multipart uploads
    (gguf / f"{RELEASE}-Q8_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(300_000))
    (gguf / f"{RELEASE}-Q4_K_M.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(1000))
    awq = root / "quant" / "awq"
    awq.mkdir(parents=True)
    shutil.copy(root / "merged" / "config.json", awq / "config.json")
    shutil.copy(root / "merged" / "model.safetensors", awq / "model.safetensors")
    (awq / "recipe.yaml").write_text("quant_stage: {scheme: W4A16_ASYM}\n")

    card = root / "card"
    for sub, title in (("", "Tiny Release"), ("gguf/", "Tiny Release GGUF"), ("awq/", "AWQ")):
        (card / sub).mkdir(parents=True, exist_ok=True)
        (card / sub / "README.md").write_text(
            f"---\nlicense: apache-2.0\ntags: [medical]\n---\n# {title}\n\ndemo_mcq/acc 0.600\n"
        )
    (card / "metrics.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(200))

    q8 = f"quant/gguf/{RELEASE}-Q8_0.gguf"
    q4 = f"quant/gguf/{RELEASE}-Q4_K_M.gguf"
    awq_files = [f"quant/awq/{n}" for n in ("config.json", "model.safetensors", "recipe.yaml")]
    cards = ["card/README.md", "card/gguf/README.md", "card/awq/README.md", "card/metrics.png"]
    quants = [
        {"family": "gguf", "type": "Q8_0", "accepted": True, "reason": None,
         "files": _records(root, [q8]), "checks": {}},
        {"family": "gguf", "type": "Q4_K_M", "accepted": False, "reason": "ppl ratio 1.3 > 1.15",
         "files": _records(root, [q4]), "checks": {}},
        {"family": "awq", "type": "W4A16_ASYM", "accepted": True, "reason": None,
         "files": _records(root, awq_files), "checks": {}},
    ]  # fmt: skip
    manifest = {
        "schema_version": 1,
        "release": {"name": RELEASE, "version": "0.1.0", "repo": REPO},
        "steps": {
            "merge": {"status": "done", "inputs_hash": digest_of("m"),
                      "outputs": _records(root, merged)},
            "gate": {"status": "done", "passed": True, "inputs_hash": digest_of("g"),
                     "report": _records(root, ["gates/report.json"]), "outputs": {}},
            "quantize": {"status": "done", "inputs_hash": digest_of("q"), "quants": quants,
                         "outputs": _records(root, [q8, q4, *awq_files])},
            "card": {"status": "done", "inputs_hash": digest_of("c"),
                     "outputs": _records(root, cards)},
        },
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    recipe = write_recipe(
        tmp / "recipe.yaml",
        {"base": str(model), "sft": str(model)},
        {"merge_method": "linear", "models": [{"model": "base", "parameters": {"weight": 0.5}},
                                              {"model": "sft", "parameters": {"weight": 0.5}}]},
        name=RELEASE,
    )  # fmt: skip
    return Release(recipe, workdir)
