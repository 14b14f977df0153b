"""The disk fills up during a write: one clear error, no partial file, nothing recorded.

A real full disk: a small tmpfs mounted for the test (needs root; skipped otherwise). The
free-space preflight is told the disk is large, so the write itself meets ENOSPC from the
kernel, in mergekit (merge), in llama.cpp's converter (quantize) and in our atomic writer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.faultkit import check_consistent, temp_leftovers
from helpers import LINEAR, run_cli, write_recipe


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def plenty_of_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preflight sees 1 TB free, so the failure happens in the middle of the real write."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))


def model_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def test_merge_on_full_disk(tmp_path, llama, capsys, plenty_of_space, fault_log):
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    size_kib = model_bytes(llama["sft"]) // 2048  # half a model fits
    with tiny_tmpfs(tmp_path / "disk", size_kib) as disk:
        fault_log.add("disk-full:merge", tmpfs_kib=size_kib)
        code = run_cli("merge", recipe, "--workdir", disk)
        err = capsys.readouterr().err
        root = disk / "tiny-release"
        assert code != 0, err
        assert "No space left on device" in err, err  # the cause is named
        assert "Traceback" not in err
        assert not (root / "merged").exists()
        assert not temp_leftovers(root), "the staging folder must be removed"
        assert check_consistent(root) is None  # nothing recorded for a failed merge


def test_merge_on_full_disk_is_an_environment_error(tmp_path, llama, capsys, plenty_of_space):
    recipe = write_recipe(tmp_path / "r.yaml", {"sft": llama["sft"], "grpo": llama["grpo"]}, LINEAR)
    with tiny_tmpfs(tmp_path / "disk", model_bytes(llama["sft"]) // 2048) as disk:
        code = run_cli("merge", recipe, "--workdir", disk)
        err = capsys.readouterr().err
        assert code == 7 and "internal error" not in err and "fix:" in err


@pytest.mark.slow
def test_quantize_on_full_disk(tmp_path, llama, capsys, plenty_of_space, fault_log):
    model = llama["base"]
    need_kib = model_bytes(model) // 1024
    with tiny_tmpfs(tmp_path / "disk", need_kib + 1024) as disk:  # merged/ fits, GGUF does not
        shutil.copytree(model, disk / "tiny-release" / "merged")
        recipe = write_recipe(
            tmp_path / "r.yaml", {"base": model},
            {"merge_method": "linear", "models": [{"model": "base",
                                                   "parameters": {"weight": 1.0}}]},
            quantize={"gguf": {"types": ["Q8_0"], "intermediate": "f32"}},
        )  # fmt: skip
        fault_log.add("disk-full:quantize", tmpfs_kib=need_kib + 1024)
        code = run_cli("quantize", recipe, "--workdir", disk)
        err = capsys.readouterr().err
        root = disk / "tiny-release"
        assert code == 7, err  # an environment problem, not a bad input
        assert "fix:" in err and "Traceback" not in err
        assert not (root / "quant" / "gguf").exists()
        assert not temp_leftovers(root)
        assert check_consistent(root) is None


def test_atomic_writer_on_full_disk(tmp_path, fault_log):
    """Our own writer (manifest, reports, cards): ENOSPC leaves the old file and no temp."""
    from medrelease.core.atomic import atomic_write_json

    with tiny_tmpfs(tmp_path / "disk", 64) as disk:
        target = disk / "manifest.json"
        atomic_write_json(target, {"steps": {"merge": {"status": "done"}}})
        before = target.read_bytes()
        fault_log.add("disk-full:atomic-write", tmpfs_kib=64)
        with pytest.raises(OSError) as info:
            atomic_write_json(target, {"blob": "x" * 200_000})
        assert info.value.errno == 28  # ENOSPC
        assert target.read_bytes() == before
        assert [p.name for p in disk.iterdir()] == ["manifest.json"]
