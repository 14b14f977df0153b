"""The stand-in stages: built, cached, deterministic."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem
from medrelease.core.hashing import digest_of, sha256_file_uncached
from medrelease.demo import standins

pytestmark = pytest.mark.slow


def test_build_writes_three_loadable_llama_stages(demo_build):
    stages, seconds = demo_build
    print(f"\ndemo stage build: {seconds:.1f} s wall")
    assert list(stages) == ["base", "sft", "grpo"]
    hashes = set()
    for folder in stages.values():
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "llama" and config["hidden_size"] == 256
        # the SentencePiece model travels with every stage (llama.cpp's converter reads it)
        assert (folder / "tokenizer.model").is_file()
        hashes.add(sha256_file_uncached(folder / "model.safetensors"))
    assert len(hashes) == 3  # every stage was really trained
    marker = json.loads((stages["base"].parent / standins.MARKER).read_text())
    assert marker["plan_sha256"] == digest_of(standins.build_plan())
    assert set(marker["timings_s"]) == {"init", "base", "sft", "grpo"}
    assert not list(stages["base"].parent.glob(".init"))


def test_second_build_reuses_the_folder(demo_stages):
    root = demo_stages["base"].parent
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    start = time.perf_counter()
    again = standins.build_demo_stages(root, reporter=Reporter(quiet=True))
    assert time.perf_counter() - start < 10
    assert again == demo_stages
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before


def test_changed_files_or_plan_invalidate_the_cache(demo_stages, tmp_path: Path):
    copy = tmp_path / "stages"
    shutil.copytree(demo_stages["base"].parent, copy)
    plan = digest_of(standins.build_plan())
    assert standins.cached_build_matches(copy, plan)
    assert not standins.cached_build_matches(copy, digest_of({"other": "plan"}))
    with open(copy / "sft" / "config.json", "a") as fh:
        fh.write(" ")
    assert not standins.cached_build_matches(copy, plan)


def test_foreign_folder_is_not_overwritten(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(EnvironmentProblem, match="holds no demo stages"):
        standins.build_demo_stages(tmp_path / "mine", reporter=Reporter(quiet=True))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.heavy  # the heavy tier (make test-heavy, in CI): a second training run
def test_retraining_a_stage_gives_identical_bytes(demo_stages, tmp_path: Path):
    """Same inputs, same bytes: the grpo stage retrained from the built sft is identical."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(demo_stages["sft"]))
    out = tmp_path / "grpo-again"
    standins.train_stage("grpo", demo_stages["sft"], out, tok)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer.model"):
        assert sha256_file_uncached(out / name) == sha256_file_uncached(
            demo_stages["grpo"] / name
        ), name


def test_initial_model_and_tokenizer_are_reproducible(demo_stages, tmp_path: Path):
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    a = build_tiny_model(tmp_path / "a", TinySpec(seed=standins.INIT_SEED))
    b = build_tiny_model(tmp_path / "b", TinySpec(seed=standins.INIT_SEED))
    for name in ("model.safetensors", "tokenizer.model"):
        assert sha256_file_uncached(a / name) == sha256_file_uncached(b / name)
    # and it is the tokenizer every stage carries
    assert sha256_file_uncached(a / "tokenizer.model") == sha256_file_uncached(
        demo_stages["grpo"] / "tokenizer.model"
    )
