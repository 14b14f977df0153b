"""The input scan reads each file just behind mergekit (merge/follow.py): a paced scan never
reads past what its pace allows, still gives hashlib's digest and torch's NaN verdict, and the
follower learns every tensor mergekit loads, through mergekit's own loader."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from helpers import LINEAR


def _write(path: Path, n: int = 6, rows: int = 300_000, nan: bool = True) -> Path:
    """A safetensors file of `n` float32 tensors of `rows` values, one NaN in t3 if `nan`."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    tensors = {f"t{i}": torch.randn(rows, generator=g) for i in range(n)}
    if nan:
        tensors["t3"][17] = float("nan")
    save_file(tensors, str(path))
    return path


class StepPace:
    """A pace the test moves by hand: the scan may read up to the start of tensor `k`."""

    def __init__(self, path: Path):
        from medrelease.stages.safetensors_check import read_header

        header, start = read_header(path)
        self.starts = sorted(
            start + int(v["data_offsets"][0])  # type: ignore[index]
            for k, v in header.items()
            if k != "__metadata__"
        )
        self.k = 0
        self.changed = threading.Condition()
        self.asked = 0

    def limit(self, path: Path) -> int | None:
        with self.changed:
            self.asked += 1
            return self.starts[self.k] if self.k < len(self.starts) else None

    def wait(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def allow(self, k: int) -> None:
        with self.changed:
            self.k = k
            self.changed.notify_all()


def _settle(progress: list[int], seconds: float = 0.5) -> int:
    time.sleep(seconds)
    return sum(progress)


def test_paced_scan_stops_at_the_limit_and_matches_hashlib(tmp_path):
    from medrelease.merge.weight_scan import scan_file, scan_files

    path = _write(tmp_path / "w.safetensors")
    pace = StepPace(path)
    progress: list[int] = []
    done: dict = {}
    t = threading.Thread(
        target=lambda: done.update(scan_files([path], progress.append, pace=pace)), daemon=True
    )
    t.start()
    tensor_bytes = 300_000 * 4
    assert _settle(progress) == 0  # limit at the first tensor: nothing of it read
    pace.allow(2)
    assert _settle(progress) == 2 * tensor_bytes  # exactly the two tensors allowed
    pace.allow(3)
    assert _settle(progress) == 3 * tensor_bytes and not done
    pace.allow(99)  # released: reads on, to the bad tensor
    t.join(10)
    res = done[path]
    assert res.nonfinite == ("t3", 1)
    # and the same scan without the NaN gives hashlib's digest, paced or not
    clean = tmp_path / "clean.safetensors"
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["t3"] = torch.nan_to_num(state["t3"])
    save_file(state, str(clean))
    free = StepPace(clean)
    free.allow(99)
    paced = scan_files([clean], pace=free)[clean]
    assert not isinstance(paced, BaseException)
    assert paced.sha256 == hashlib.sha256(clean.read_bytes()).hexdigest()
    assert paced.sha256 == scan_file(clean).sha256 and paced.nonfinite is None


def test_two_threads_take_whichever_file_may_be_read(tmp_path):
    """A file held at its first tensor does not stop the other thread from scanning another."""
    from medrelease.merge.weight_scan import scan_files

    held, free = (
        _write(tmp_path / "a.safetensors"),
        _write(tmp_path / "b.safetensors", n=2, nan=False),
    )

    class OnePace(StepPace):
        def limit(self, path: Path) -> int | None:
            return super().limit(path) if path == held else None

    pace = OnePace(held)
    done: dict = {}
    t = threading.Thread(
        target=lambda: done.update(scan_files([held, free], threads=2, pace=pace)), daemon=True
    )
    t.start()
    time.sleep(0.5)
    assert not done  # `held` still waits ...
    pace.allow(99)
    t.join(10)
    assert done[free].sha256 == hashlib.sha256(free.read_bytes()).hexdigest()  # ... b was read
    assert done[held].nonfinite == ("t3", 1)


def test_follower_sees_every_tensor_mergekit_loads(llama, tmp_path):
    """A real mergekit run: by its end the follower had let the scan read every input file to
    its last byte (mergekit loaded every tensor), before being released."""
    from medrelease.core.console import Reporter
    from medrelease.merge.config_check import resolve_merge_config
    from medrelease.merge.follow import MergekitFollower
    from medrelease.merge.step import run_mergekit
    from medrelease.merge.weight_scan import scan_files

    files = [llama[s] / "model.safetensors" for s in ("sft", "grpo")]

    class Recording(MergekitFollower):
        at_release: dict[Path, int | None] = {}

        def release(self) -> None:
            if not self.at_release:
                self.at_release.update({f: self.limit(f) for f in files})
            super().release()

    follower = Recording()
    before = {f: follower.limit(f) for f in files}
    assert all(lim is not None and lim < f.stat().st_size for f, lim in before.items())
    results: dict = {}
    scan = threading.Thread(
        target=lambda: results.update(scan_files(files, pace=follower)), daemon=True
    )
    scan.start()
    config = resolve_merge_config(LINEAR, {s: str(llama[s]) for s in ("sft", "grpo")})
    with follower.following():
        run_mergekit(config, tmp_path / "out", seed=0, reporter=Reporter(quiet=True))
    scan.join(30)
    assert follower.at_release == {f: f.stat().st_size for f in files}
    for f in files:
        assert results[f].sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    from mergekit.io.lazy_tensor_loader import LazyTensorLoader

    assert LazyTensorLoader.get_tensor.__name__ == "get_tensor"  # mergekit's own, put back
    assert LazyTensorLoader.get_tensor.__module__.startswith("mergekit")


def test_follower_lets_go_when_its_bookkeeping_fails(tmp_path):
    """A loader the hook cannot make sense of never blocks the scan: following stops, the
    tensor still reaches mergekit."""
    from mergekit.io.lazy_tensor_loader import LazyTensorLoader

    from medrelease.merge.follow import MergekitFollower

    folder = tmp_path / "m"
    folder.mkdir()
    path = _write(folder / "model.safetensors")
    loader = LazyTensorLoader.from_disk(str(folder))
    follower = MergekitFollower()
    with follower.following():
        loader.get_tensor("t0")
        assert follower.limit(path) == follower.limit(path) is not None  # t0 noted: followed
        loader.index.base_path = None  # type: ignore[assignment]  # the shard is open already
        assert loader.get_tensor("t1").shape == (300_000,)
        assert follower.limit(path) is None  # released inside the merge


@pytest.mark.parametrize("memory", [1 << 50, 1 << 10])
def test_merge_follows_mergekit_only_where_the_cache_cannot_hold_the_inputs(
    llama, tmp_path, monkeypatch, memory
):
    """Through `medrelease merge`: inputs larger than half the available memory are scanned
    behind mergekit, smaller ones ahead of it; the manifest's digests are hashlib's either way."""
    import json

    import medrelease.merge.preflight as preflight
    import medrelease.merge.step as step
    from helpers import run_cli, write_recipe

    monkeypatch.setenv("MEDRELEASE_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setattr(step, "mem_available", lambda: memory)
    paces: list[object] = []
    real_scan = preflight.scan_files

    def spying(paths, *a, **k):
        paces.append(k.get("pace"))
        return real_scan(paths, *a, **k)

    monkeypatch.setattr(preflight, "scan_files", spying)
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    assert run_cli("merge", recipe, "--workdir", tmp_path / "wd") == 0
    assert len(paces) == 1 and (paces[0] is None) == (memory == 1 << 50)
    record = json.loads((tmp_path / "wd" / "tiny-release" / "manifest.json").read_text())
    for stage in ("sft", "grpo"):
        for rel, rec in record["steps"]["merge"]["stages"][stage]["files"].items():
            f = llama[stage] / rel
            assert rec["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
