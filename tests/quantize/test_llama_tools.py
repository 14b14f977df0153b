"""The `medrelease setup` provider for llama.cpp's tools: when it builds, and how it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medrelease.core.errors import EnvironmentProblem
from medrelease.quantize.gguf import tools as llama_tools


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


def test_tools_built_with_the_bindings_are_preferred(tmp_path, monkeypatch):
    wheel, own = tmp_path / "wheel", tmp_path / "own"
    monkeypatch.setattr(llama_tools, "wheel_tools_dir", lambda: wheel)
    monkeypatch.setattr(llama_tools, "built_tools_dir", lambda: own)
    assert llama_tools.tools_dir() == own  # nothing in the wheel: setup's own build
    _fake_tools(wheel, "llama-cpp-python==0.3.36 vendor/llama.cpp (same build as the bindings)")
    assert llama_tools.tools_dir() == wheel
    assert llama_tools.tool_path("llama-imatrix") == wheel / "llama-imatrix"
    monkeypatch.setattr(llama_tools, "wheel_tools_dir", lambda: None)  # llama_cpp not installed
    assert llama_tools.tools_dir() == own


def test_setup_builds_only_where_the_bindings_came_without_tools(tmp_path, monkeypatch):
    from importlib.metadata import version

    wheel, own = tmp_path / "wheel", tmp_path / "own"
    monkeypatch.setattr(llama_tools, "wheel_tools_dir", lambda: wheel)
    monkeypatch.setattr(llama_tools, "built_tools_dir", lambda: own)
    built: list[Path] = []
    monkeypatch.setattr(llama_tools, "build_tools", lambda v, target: built.append(target) or 1.0)
    llama_tools.provide_llama_tools()
    assert built == [own]  # never into the installed llama_cpp package
    _fake_tools(wheel, f"llama-cpp-python=={version('llama-cpp-python')} vendor/llama.cpp")
    assert f"present in {wheel}" in llama_tools.provide_llama_tools() and built == [own]


def test_wheel_tools_dir_is_found_without_importing_llama_cpp():
    import sys

    had = "llama_cpp" in sys.modules
    folder = llama_tools.wheel_tools_dir()
    assert folder is not None and folder.parent.name == "lib"
    assert (folder.parent.parent / "__init__.py").is_file()  # the llama_cpp package itself
    assert had or "llama_cpp" not in sys.modules
