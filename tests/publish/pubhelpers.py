"""The publish tests' release (the local Hub is `hub` in tests/conftest.py): a real tiny model
in merged/, and every later step stood in for (tests/releases.py) by a well-formed gate report,
a GGUF and an AWQ quant (one GGUF type rejected, so it must never be published), cards, and
manifest records written exactly as the contracts describe, with real sha256 of every file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers import recipe_data
from releases import BuiltRelease, StandIn, built_release, file_records

RELEASE = "tiny-release"
REPO = "medrelease-tests/tiny-release"

REPORT = {
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

Q8 = f"quant/gguf/{RELEASE}-Q8_0.gguf"
Q4 = f"quant/gguf/{RELEASE}-Q4_K_M.gguf"
AWQ_FILES = [f"quant/awq/{n}" for n in ("config.json", "model.safetensors", "recipe.yaml")]


def _quantize_record(root: Path) -> dict[str, Any]:
    from medrelease.core.hashing import digest_of

    quants = [
        {"family": "gguf", "type": "Q8_0", "accepted": True, "reason": None,
         "files": file_records(root, [Q8]), "checks": {}},
        {"family": "gguf", "type": "Q4_K_M", "accepted": False, "reason": "ppl ratio 1.3 > 1.15",
         "files": file_records(root, [Q4]), "checks": {}},
        {"family": "awq", "type": "W4A16_ASYM", "accepted": True, "reason": None,
         "files": file_records(root, AWQ_FILES), "checks": {}},
    ]  # fmt: skip
    return {"status": "done", "inputs_hash": digest_of("q"), "quants": quants}


def _gate_record(root: Path) -> dict[str, Any]:
    from medrelease.core.hashing import digest_of

    report = file_records(root, ["gates/report.json"])
    return {"status": "done", "passed": True, "inputs_hash": digest_of("g"), "report": report,
            "outputs": {}}  # fmt: skip


def _done(tag: str) -> dict[str, Any]:
    from medrelease.core.hashing import digest_of

    return {"status": "done", "inputs_hash": digest_of(tag)}


def release_for_publish(tmp: Path, model: Path) -> BuiltRelease:
    """The release built up to the card in tmp/build, `model` standing in for the merge."""
    # GGUF magic + version, then payload: large enough to go through LFS multipart uploads
    gguf = {Q8: b"GGUF\x03\x00\x00\x00" + os.urandom(300_000),
            Q4: b"GGUF\x03\x00\x00\x00" + os.urandom(1000)}  # fmt: skip
    awq: dict[str, Any] = {
        "quant/awq/config.json": model / "config.json",
        "quant/awq/model.safetensors": model / "model.safetensors",
        "quant/awq/recipe.yaml": "quant_stage: {scheme: W4A16_ASYM}\n",
    }
    cards: dict[str, Any] = {
        f"card/{sub}README.md": "---\nlicense: apache-2.0\ntags: [medical]\n---\n"
        f"# {title}\n\ndemo_mcq/acc 0.600\n"
        for sub, title in (("", "Tiny Release"), ("gguf/", "Tiny Release GGUF"), ("awq/", "AWQ"))
    }
    cards["card/metrics.png"] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(200)
    header = {"release": {"name": RELEASE, "version": "0.1.0", "repo": REPO}}
    given = {
        "merge": StandIn(files={"merged": model}, record=_done("m"), header=header),
        "gate": StandIn(files={"gates/report.json": REPORT}, record=_gate_record),
        "quantize": StandIn(files={**gguf, **awq}, record=_quantize_record),
        "card": StandIn(files=cards, record=_done("c")),
    }
    stages = {"base": str(model), "sft": str(model)}
    halves = [{"model": m, "parameters": {"weight": 0.5}} for m in ("base", "sft")]
    merge = {"merge_method": "linear", "models": halves}
    return built_release(tmp, "card", recipe_data(stages, merge, name=RELEASE), given=given)
