"""Tiny stand-in stage checkpoints for the embedded demo, trained briefly on CPU.

    base  a random tiny llama (SentencePiece) pretrained on medical sentences
    sft   base + supervised answers to half the MCQ facts + the bracket format rule
    grpo  sft + every MCQ fact drilled plainly (a stand-in for a correctness-only GRPO-CoT
          stage): best at MCQ, but it forgets the format instruction

A linear 50/50 merge of sft and grpo keeps most of both (see data/demo/recipe.yaml).
The build is deterministic (fixed seeds, fixed batch order, one thread, deterministic
kernels): the same versions of torch/transformers/sentencepiece give byte-identical files.
A marker file records what was built; a folder whose marker and files match is reused.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medrelease.core.atomic import atomic_write_json, staging_dir
from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem
from medrelease.core.hashing import digest_of, folder_records
from medrelease.core.manifest import tool_versions
from medrelease.demo import facts
from medrelease.demo.training import TrainSettings, encode_examples, train
from medrelease.testing import corpus
from medrelease.testing.tiny import TinySpec, build_tiny_model
from medrelease.testing.training import encode_text

STAGES = ("base", "sft", "grpo")
MARKER = "demo-stages.json"
# Bump when the recipe below changes in a way the digest would not see (e.g. code changes).
BUILD_VERSION = 1
TOOLS = ("torch", "transformers", "sentencepiece", "tokenizers", "safetensors")

SENTENCEPIECE_FILES = ("tokenizer.model", "special_tokens_map.json")
INIT_SEED = 0
BASE_LINES = 600  # medrelease.testing.corpus sentences
SETTINGS: dict[str, TrainSettings] = {
    "base": TrainSettings(steps=200, lr=3e-3, batch_size=16, seed=0),
    "sft": TrainSettings(steps=200, lr=2e-3, batch_size=16, seed=1),
    "grpo": TrainSettings(steps=150, lr=1e-3, batch_size=16, seed=2),
}
DESCRIPTIONS = {
    "base": "tiny llama pretrained briefly on synthetic medical sentences",
    "sft": "base + SFT on half the MCQ facts and the bracket format rule",
    "grpo": "sft + all MCQ facts drilled plainly (GRPO-CoT stand-in); forgets the format rule",
}


def build_plan() -> dict[str, Any]:
    """Everything that determines the stage files; its digest keys the cache."""
    return {
        "version": BUILD_VERSION,
        "init_seed": INIT_SEED,
        "base_lines": BASE_LINES,
        "settings": {k: vars(v) for k, v in SETTINGS.items()},
        "sft": [vars(e) for e in facts.sft_examples()],
        "grpo": [vars(e) for e in facts.grpo_examples()],
        "tools": tool_versions(*TOOLS),
    }


def build_demo_stages(root: Path, *, reporter: Reporter | None = None) -> dict[str, Path]:
    """Build (or reuse) the demo's `base`, `sft` and `grpo` model folders under `root`.

    Returns stage name -> folder. The folder is written atomically: a killed build leaves
    no half-built `root`, and an existing `root` is replaced only by a complete new one.
    """
    from medrelease.core.quiet import quiet_libraries

    quiet_libraries()
    reporter = reporter or Reporter()
    root = Path(root)
    plan_digest = digest_of(build_plan())
    folders = {name: root / name for name in STAGES}
    if cached_build_matches(root, plan_digest):
        reporter.info(f"demo stages: reusing {root}")
        return folders
    if root.exists() and not (root / MARKER).is_file():
        raise EnvironmentProblem(
            f"{root} exists but holds no demo stages (no {MARKER})",
            hint="point the demo at an empty or new folder, or remove this one",
        )
    reporter.info(f"demo stages: training tiny stand-ins on CPU into {root}")
    with staging_dir(root, replace=True) as tmp:
        timings = _build(tmp, reporter)
        marker = {
            "plan_sha256": plan_digest,
            "plan": {k: v for k, v in build_plan().items() if k not in ("sft", "grpo")},
            "stages": {
                name: {"description": DESCRIPTIONS[name], "files": folder_records(tmp / name)}
                for name in STAGES
            },
            "timings_s": timings,
        }
        atomic_write_json(tmp / MARKER, marker)
    return folders


def cached_build_matches(root: Path, plan_digest: str) -> bool:
    """True when `root` holds a build of this plan whose files are unchanged."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("plan_sha256") != plan_digest:
        return False
    stages = marker.get("stages", {})
    for name in STAGES:
        folder = root / name
        if name not in stages or not folder.is_dir():
            return False
        if folder_records(folder) != stages[name].get("files"):
            return False
    return True


def _build(tmp: Path, reporter: Reporter) -> dict[str, float]:
    from transformers import AutoTokenizer

    timings: dict[str, float] = {}
    start = time.perf_counter()
    init = tmp / ".init"
    build_tiny_model(init, TinySpec(arch="llama", seed=INIT_SEED))
    tokenizer = AutoTokenizer.from_pretrained(str(init))
    timings["init"] = round(time.perf_counter() - start, 2)

    parents = {"base": init, "sft": tmp / "base", "grpo": tmp / "sft"}
    with reporter.progress():
        for name in STAGES:
            start = time.perf_counter()
            with reporter.phase(f"training {name}", total=SETTINGS[name].steps) as advance:
                loss = train_stage(name, parents[name], tmp / name, tokenizer, on_step=advance)
            timings[name] = round(time.perf_counter() - start, 2)
            reporter.info(f"  {name}: {SETTINGS[name].steps} steps, final loss {loss:.3f}")
    _remove_tree(init)
    return timings


def stage_data(name: str, tokenizer: Any) -> list[tuple[list[int], int]]:
    """The token data one stage is trained on."""
    if name == "base":
        return encode_text(tokenizer, corpus.sentences(BASE_LINES, seed=1))
    examples = facts.sft_examples() if name == "sft" else facts.grpo_examples()
    return encode_examples(tokenizer, examples)


def train_stage(
    name: str,
    parent: Path,
    out: Path,
    tokenizer: Any,
    *,
    on_step: Callable[[], None] | None = None,
) -> float:
    """Train stage `name` from the `parent` folder into `out`; returns the final loss."""
    loss = train(parent, out, stage_data(name, tokenizer), SETTINGS[name], on_step=on_step)
    # transformers 5 saves only tokenizer.json; keep the SentencePiece files too, since
    # llama.cpp's converter reads tokenizer.model for llama-style vocabularies.
    for file in SENTENCEPIECE_FILES:
        if (parent / file).is_file():
            shutil.copyfile(parent / file, out / file)
    return loss


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
