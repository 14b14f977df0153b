"""Weight files read once per job: the NaN/Inf bit scan (before mergekit), input sha256 in the
background, the merged output hashed + scanned while it is verified, and a per-user cache of
digests and verdicts. Every answer is compared with the plain tool (hashlib, torch.isfinite),
and the cache is shown never to serve a fact for changed content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import LINEAR, run_cli, write_recipe


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own per-user cache, and tiny files are cached like large ones."""
    import medrelease.core.filecache as filecache

    folder = tmp_path / "user-cache"
    monkeypatch.setenv("MEDRELEASE_CACHE_DIR", str(folder))
    monkeypatch.setattr(filecache, "MIN_CACHED_BYTES", 0)
    monkeypatch.setattr(filecache, "RACY_WINDOW_NS", 0)  # test files are seconds old at most
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_torch(path: Path, tensors: dict) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def torch_nonfinite(path: Path) -> dict[str, int]:
    """The reference answer: torch.isfinite over every floating tensor."""
    import torch
    from safetensors.torch import load_file

    out = {}
    for name, t in load_file(str(path)).items():
        if t.is_floating_point():
            n = int((~torch.isfinite(t)).sum())
            if n:
                out[name] = n
    return out


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_scan_matches_torch_and_hashlib(tmp_path, dtype):
    import torch

    from medrelease.merge.weight_scan import CHUNK, scan_file

    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    big = torch.randn(CHUNK // 2 + 13, generator=g).to(dt)  # spans chunk boundaries
    big[5] = float("nan")
    big[-1] = float("-inf")
    big[CHUNK // 4] = float("inf")
    tensors = {
        "a_clean": torch.randn(64, 33, generator=g).to(dt),
        "b_bad": big,
        # int bit patterns that would be NaN/Inf as floats must not count
        "c_ints": torch.tensor([0x7F800000, 0x7FC00000, -1], dtype=torch.int32),
    }
    path = save_torch(tmp_path / "m.safetensors", tensors)
    result = scan_file(path)
    assert torch_nonfinite(path) == {"b_bad": 3}
    assert result.nonfinite == ("b_bad", 3)

    del tensors["b_bad"]
    path = save_torch(tmp_path / "clean.safetensors", tensors)
    result = scan_file(path)
    assert result.nonfinite is None and torch_nonfinite(path) == {}
    assert result.sha256 == sha256(path)


def test_float8_and_subnormal_edge_values(tmp_path):
    import torch

    from medrelease.merge.weight_scan import scan_file

    finite = torch.tensor([0.0, -0.0, 1e-45, 3.4e38, -3.4e38, 1.0], dtype=torch.float32)
    path = save_torch(tmp_path / "edge.safetensors", {"w": finite})
    assert scan_file(path).nonfinite is None  # largest, smallest and signed zero are finite
    e5 = torch.tensor([1.0, float("inf"), float("nan"), -2.0]).to(torch.float8_e5m2)
    e4 = torch.tensor([1.0, float("nan"), 448.0]).to(torch.float8_e4m3fn)
    path = save_torch(tmp_path / "f8.safetensors", {"e4": e4, "e5": e5})
    got = scan_file(path)
    ref = {k: int((~torch.isfinite(v.float())).sum()) for k, v in {"e4": e4, "e5": e5}.items()}
    assert ref == {"e4": 1, "e5": 2}
    assert got.nonfinite == ("e4", 1)  # the first bad tensor in file order, counted in full


def test_real_checkpoint_hash_equals_hashlib(llama):
    from medrelease.merge.weight_scan import scan_files

    files = [llama[s] / "model.safetensors" for s in ("sft", "grpo")]
    results = scan_files(files, threads=2)
    for f in files:
        res = results[f]
        assert not isinstance(res, BaseException)
        assert res.sha256 == sha256(f) and res.nonfinite is None and not res.unscanned


def _stage(llama, tmp_path: Path, name: str = "grpo") -> Path:
    dst = tmp_path / name
    shutil.copytree(llama[name], dst)
    return dst


def _check(stage_dir: Path, cache_path: Path | None):
    from medrelease.core.hashing import HashCache
    from medrelease.merge import preflight
    from medrelease.stages import checks as stage_checks
    from medrelease.stages.sources import ResolvedStage

    stage = ResolvedStage(name="grpo", kind="local", source=str(stage_dir), path=stage_dir)
    facts = stage_checks.check_weights(stage)
    hashes = HashCache(cache_path)
    preflight.check_finite_and_hash({"grpo": (stage, facts)}, hashes).wait()
    hashes.save()
    return hashes


def test_warm_check_reads_nothing_and_changed_file_is_rescanned(
    llama, tmp_path, monkeypatch, user_cache
):
    import medrelease.merge.preflight as preflight

    stage = _stage(llama, tmp_path)
    weights = stage / "model.safetensors"
    hashes = _check(stage, tmp_path / "r1" / "sha256.json")
    assert hashes.cached(weights) == sha256(weights)
    facts = json.loads((user_cache / "file-facts.json").read_text())
    entry = facts[str(weights.resolve())]
    assert entry["facts"]["sha256"] == sha256(weights) and entry["ctime_ns"] > 0

    # another release (fresh release cache) reuses the per-user facts: no scan at all
    calls: list[list[Path]] = []
    real_scan = preflight.scan_files

    def counting_scan(paths, *a, **k):
        calls.append(list(paths))
        return real_scan(paths, *a, **k)

    monkeypatch.setattr(preflight, "scan_files", counting_scan)
    warm = _check(stage, tmp_path / "r2" / "sha256.json")
    assert calls == [[]] and warm.cached(weights) == sha256(weights)

    # same size, mtime put back: ctime still moves, so the NaN is found
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    from medrelease.stages.safetensors_check import read_header

    header, start = read_header(weights)
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    info: Any = header[name]
    off = start + int(info["data_offsets"][0])
    data[off : off + 4] = np.array([np.nan], dtype="<f4").tobytes()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size and weights.stat().st_mtime_ns == st.st_mtime_ns
    from medrelease.core.errors import InputError

    with pytest.raises(InputError, match=rf"tensor {name} in model.safetensors has 1 NaN/Inf"):
        _check(stage, tmp_path / "r2" / "sha256.json")
    assert calls[-1] == [weights]


def test_moved_folder_keeps_digests_only_for_unchanged_files(tmp_path):
    from medrelease.core.hashing import HashCache

    old = tmp_path / "staging"
    old.mkdir()
    (old / "a.bin").write_bytes(b"a" * 100)
    (old / "b.bin").write_bytes(b"b" * 100)
    cache = HashCache(tmp_path / "sha256.json")
    for f in ("a.bin", "b.bin"):
        cache.sha256(old / f)
    new = tmp_path / "final"
    os.replace(old, new)
    (new / "b.bin").write_bytes(b"B" * 100)  # rewritten after the move
    cache.moved(old, new)
    assert cache.cached(new / "a.bin") == sha256(new / "a.bin")
    assert cache.cached(new / "b.bin") is None
    assert cache.sha256(new / "b.bin") == sha256(new / "b.bin")


def test_verify_finds_nan_from_the_bit_scan_like_torch(llama, tmp_path):
    from safetensors.torch import load_file

    from medrelease.core.hashing import HashCache
    from medrelease.merge.verify import WeightsScan, verify_model_folder

    folder = _stage(llama, tmp_path, "sft")
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    state["model.layers.0.mlp.up_proj.weight"][1, 2] = float("nan")
    save_torch(weights, state)
    hashes = HashCache(tmp_path / "sha256.json")
    scanned = verify_model_folder(folder, weights_scan=WeightsScan(folder, hashes))
    plain = verify_model_folder(folder)  # the torch route over loaded parameters
    assert not scanned["finite_weights"]["ok"] and not plain["finite_weights"]["ok"]
    assert "model.layers.0.mlp.up_proj.weight" in scanned["finite_weights"]["detail"]
    assert "model.layers.0.mlp.up_proj.weight" in plain["finite_weights"]["detail"]
    assert hashes.cached(weights) is None  # a bad file's digest is never recorded


def test_merge_records_true_digests_cold_and_warm(llama, tmp_path, monkeypatch, user_cache):
    import medrelease.merge.preflight as preflight

    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    assert run_cli("merge", recipe, "--workdir", tmp_path / "cold") == 0
    monkeypatch.setattr(
        preflight, "scan_files", lambda paths, *a, **k: {} if not paths else pytest.fail("read")
    )
    assert run_cli("merge", recipe, "--workdir", tmp_path / "warm") == 0
    records = []
    for wd in ("cold", "warm"):
        root = tmp_path / wd / "tiny-release"
        step = json.loads((root / "manifest.json").read_text())["steps"]["merge"]
        for stage in ("sft", "grpo"):
            for rel, rec in step["stages"][stage]["files"].items():
                f = llama[stage] / rel
                assert rec == {"sha256": sha256(f), "size": f.stat().st_size}
        for rel, rec in step["outputs"].items():
            f = root / rel
            assert rec == {"sha256": sha256(f), "size": f.stat().st_size}
        assert step["verification"]["finite_weights"]["ok"]
        records.append(step["outputs"])
    assert records[0] == records[1]  # same merge, same bytes


def test_background_hash_refuses_a_file_that_changed(tmp_path):
    from medrelease.core.filecache import file_identity
    from medrelease.core.hashing import BackgroundHashes, FileChanged, HashCache

    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    _, before = file_identity(f)
    time.sleep(0.05)  # past the filesystem's timestamp tick
    f.write_bytes(b"y" * 1000)  # same size: rewritten after it was checked
    cache = HashCache(tmp_path / "sha256.json")
    with pytest.raises(FileChanged):
        BackgroundHashes([(f, before)], cache).wait()
    assert cache.cached(f) is None
    _, now = file_identity(f)
    BackgroundHashes([(f, now)], cache).wait()
    assert cache.cached(f) == sha256(f)


def test_a_file_written_just_now_is_not_remembered(tmp_path, monkeypatch):
    import medrelease.core.filecache as filecache
    from medrelease.core.filecache import FileFacts

    monkeypatch.setattr(filecache, "RACY_WINDOW_NS", 2_000_000_000)
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"z" * 10)
    facts = FileFacts(tmp_path / "facts.json")
    facts.put(f, "sha256", sha256(f))
    assert facts.get(f, "sha256") is None  # may still be being written: not trusted
    old = time.time_ns() - 10_000_000_000
    monkeypatch.setattr(filecache.time, "time_ns", lambda: old + 20_000_000_000)
    facts.put(f, "sha256", sha256(f))
    assert facts.get(f, "sha256") == sha256(f)
