"""The `medrelease setup` provider for llama.cpp's tools: when it builds, and how it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medrelease.core.errors import EnvironmentProblem
from medrelease.quantize import llama_tools


def test_missing_compiler_is_an_environment_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_tools.shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentProblem, match="`cmake` is not installed") as info:
        llama_tools.build_tools("0.3.36", tmp_path / "tools")
    assert info.value.exit_code == 7 and "apt-get install cmake" in (info.value.hint or "")
    assert not (tmp_path / "tools").exists()


def test_failed_command_reports_the_last_log_lines(tmp_path):
    log = tmp_path / "build.log"
    cmd = ["sh", "-c", "echo compiling; echo 'error: ggml.c: boom' >&2; exit 3"]
    with pytest.raises(EnvironmentProblem) as info:
        llama_tools._run(cmd, log, "cmake build")
    assert "cmake build failed (exit 3)" in str(info.value)
    assert "error: ggml.c: boom" in str(info.value) and info.value.where == str(log)


def _fake_tools(folder: Path, origin: str) -> None:
    folder.mkdir()
    for name in llama_tools.TOOLS:
        (folder / name).write_text("#!/bin/sh\n")
        os.chmod(folder / name, 0o755)
    (folder / "BUILD_INFO").write_text(origin + "\n")


def test_setup_skips_tools_built_for_the_installed_bindings(tmp_path, monkeypatch):
    from importlib.metadata import version

    folder = tmp_path / "tools"
    _fake_tools(folder, f"llama-cpp-python=={version('llama-cpp-python')} vendor/llama.cpp")
    monkeypatch.setattr(llama_tools, "tools_dir", lambda: folder)
    monkeypatch.setattr(llama_tools, "build_tools", lambda *a: pytest.fail("rebuilt"))
    assert "present" in llama_tools.provide_llama_tools()


def test_setup_rebuilds_tools_of_another_version(tmp_path, monkeypatch):
    folder = tmp_path / "tools"
    _fake_tools(folder, "llama-cpp-python==0.0.1 vendor/llama.cpp")
    monkeypatch.setattr(llama_tools, "tools_dir", lambda: folder)
    built: list[str] = []
    monkeypatch.setattr(llama_tools, "build_tools", lambda v, target: built.append(v) or 1.0)
    llama_tools.provide_llama_tools()
    assert built and built[0] != "0.0.1"


def test_tool_path_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_tools, "tools_dir", lambda: tmp_path)
    with pytest.raises(EnvironmentProblem, match="`llama-quantize` is not installed") as info:
        llama_tools.tool_path("llama-quantize")
    assert "run `medrelease setup`" in (info.value.hint or "")
