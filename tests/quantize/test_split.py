"""Outputs above the size limit are split in llama.cpp's shard format, and still load and pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantize.quanthelpers import RELEASE, quant_release

pytestmark = pytest.mark.slow


def test_large_outputs_are_split(tmp_path: Path, tiny_llama: Path):
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    # the tiny model's F16 is ~2.9 MB and Q8_0 ~1.5 MB: both exceed 1M
    recipe = quant_release(
        tmp_path, tiny_llama, {"gguf": {"types": ["F16", "Q8_0"], "split_max_size": "1M"}}
    ).recipe
    result = quantize_release(load_recipe(recipe), workdir=tmp_path, reporter=Reporter(quiet=True))
    quants = {q["type"]: q for q in result.record["quants"]}
    for t in ("F16", "Q8_0"):
        files = sorted(quants[t]["files"])
        n = len(files)
        assert n > 1, files
        assert files == [
            f"quant/gguf/{RELEASE}-{t}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)
        ]
        # the converter bounds tensor data per shard; metadata (the vocabulary) rides on top
        assert all(rec["size"] <= 1_000_000 + 64_000 for rec in quants[t]["files"].values())
        assert quants[t]["accepted"], quants[t]["reason"]  # llama.cpp loaded the shards
        assert quants[t]["notes"] == [f"split into {n} files of <= 1M"]
    on_disk = {p.name for p in (tmp_path / RELEASE / "quant" / "gguf").iterdir()}
    assert on_disk == {Path(f).name for q in quants.values() for f in q["files"]}
    # no intermediate or temporary file is left behind
    assert not [p for p in (tmp_path / RELEASE).rglob("*") if p.name.startswith(".mr-tmp-")]
