"""The CMake hook `make install` hands llama-cpp-python's build (data/llama/tools_in_wheel.cmake).

A stand-in for llama-cpp-python's project (same project name, same vendor/llama.cpp layout, same
way of adding llama.cpp and installing into SKBUILD_PLATLIB_DIR, tiny C sources) is configured,
built and installed with the real cmake: the hook must add the two tools to that one build and
install them where `medrelease setup` looks, runnable against the bindings' own libraries.
The real wheel's tools are checked in the last test when this venv has them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medrelease.quantize.gguf import tools as llama_tools

HOOK = Path(llama_tools.__file__).parents[2] / "data" / "llama" / "tools_in_wheel.cmake"

# the parts of llama-cpp-python's CMakeLists that matter here
TOP = """cmake_minimum_required(VERSION 3.21)
project(llama_cpp C CXX)
set(BUILD_SHARED_LIBS "On")
add_subdirectory(vendor/llama.cpp)
install(TARGETS llama LIBRARY DESTINATION ${SKBUILD_PLATLIB_DIR}/llama_cpp/lib)
set_target_properties(llama PROPERTIES INSTALL_RPATH "$ORIGIN" BUILD_WITH_INSTALL_RPATH TRUE)
"""
# llama.cpp: libllama and libllama-common, shared; tools only when standalone
LLAMA = """project("llama.cpp" C)
add_library(llama src/llama.c)
target_include_directories(llama PUBLIC include)
add_library(llama-common common/common.c)
target_link_libraries(llama-common PUBLIC llama)
"""
# llama.cpp's two tool CMakeLists, shape for shape
QUANTIZE = """add_library(llama-quantize-impl quantize.c)
target_link_libraries(llama-quantize-impl PUBLIC llama-common llama)
add_executable(llama-quantize main.c)
target_link_libraries(llama-quantize PRIVATE llama-quantize-impl)
if(LLAMA_TOOLS_INSTALL)
    install(TARGETS llama-quantize RUNTIME)
endif()
"""
IMATRIX = """add_executable(llama-imatrix imatrix.c)
target_link_libraries(llama-imatrix PRIVATE llama-common llama ${CMAKE_THREAD_LIBS_INIT})
if(LLAMA_TOOLS_INSTALL)
    install(TARGETS llama-imatrix RUNTIME)
endif()
"""
SOURCES = {
    "CMakeLists.txt": TOP,
    "llama_cpp/__init__.py": '__version__ = "9.8.7"\n',
    "vendor/llama.cpp/CMakeLists.txt": LLAMA,
    "vendor/llama.cpp/include/llama.h": "int llama_answer(void);\n",
    "vendor/llama.cpp/src/llama.c": "int llama_answer(void) { return 42; }\n",
    "vendor/llama.cpp/common/common.c": (
        '#include "llama.h"\nint common_answer(void) { return llama_answer() + 1; }\n'
    ),
    "vendor/llama.cpp/tools/quantize/CMakeLists.txt": QUANTIZE,
    "vendor/llama.cpp/tools/quantize/quantize.c": (
        "int common_answer(void);\nint quantize_answer(void) { return common_answer(); }\n"
    ),
    "vendor/llama.cpp/tools/quantize/main.c": (
        "#include <stdio.h>\nint quantize_answer(void);\n"
        'int main(void) { printf("quantize %d\\n", quantize_answer()); return 0; }\n'
    ),
    "vendor/llama.cpp/tools/imatrix/CMakeLists.txt": IMATRIX,
    "vendor/llama.cpp/tools/imatrix/imatrix.c": (
        '#include <stdio.h>\n#include "llama.h"\nint common_answer(void);\n'
        'int main(void) { printf("imatrix %d %d\\n", llama_answer(), common_answer()); }\n'
    ),
}

needs_cmake = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and cc"
)


def _tree_sha256(root: Path) -> str:
    """`find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum`"""
    names = sorted(p.relative_to(root).as_posix().encode() for p in root.rglob("*") if p.is_file())
    listing = b"".join(
        hashlib.sha256((root / n.decode()).read_bytes()).hexdigest().encode() + b"  " + n + b"\n"
        for n in names
    )
    return hashlib.sha256(listing).hexdigest()


def _build(tmp_path: Path, hook: bool) -> Path:
    source, build, platlib = tmp_path / "src", tmp_path / "build", tmp_path / "platlib"
    for name, text in SOURCES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    configure = ["cmake", "-S", source, "-B", build, f"-DSKBUILD_PLATLIB_DIR={platlib}"]
    if hook:  # what the Makefile's CMAKE_ARGS gives scikit-build-core
        configure.append(f"-DCMAKE_PROJECT_llama_cpp_INCLUDE={HOOK}")
    for cmd in (configure, ["cmake", "--build", build], ["cmake", "--install", build]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    return platlib / "llama_cpp" / "lib"


@needs_cmake
def test_hook_installs_the_tools_next_to_the_bindings_libraries(tmp_path):
    lib = _build(tmp_path, hook=True)
    tools = lib / "medrelease-llama-tools"
    assert llama_tools.tools_present(tools)
    assert llama_tools.build_info(tools) == (
        "llama-cpp-python==9.8.7 vendor/llama.cpp (same build as the bindings; "
        f"source tree sha256 {_tree_sha256(tmp_path / 'src' / 'vendor' / 'llama.cpp')})"
    )
    # they run from where they were installed, loading libllama from the bindings' folder
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    for name, expected in (("llama-quantize", "quantize 43"), ("llama-imatrix", "imatrix 42 43")):
        done = subprocess.run([tools / name], capture_output=True, text=True, env=env, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, expected)
    # the bindings' folder is as llama-cpp-python installs it; only the tools' folder is new
    assert sorted(p.name for p in lib.iterdir()) == ["libllama.so", "medrelease-llama-tools"]


@needs_cmake
def test_without_the_hook_the_build_is_unchanged(tmp_path):
    lib = _build(tmp_path, hook=False)
    assert not (lib / "medrelease-llama-tools").exists()
    assert [p.name for p in lib.iterdir()] == ["libllama.so"]


@pytest.mark.slow
@pytest.mark.skipif(
    not llama_tools.tools_present(llama_tools.wheel_tools_dir() or Path("/nonexistent")),
    reason="this llama-cpp-python was built without medrelease's hook (not by `make install`)",
)
def test_installed_wheel_tools_use_the_bindings_libllama():
    tools = llama_tools.wheel_tools_dir()
    assert tools is not None and llama_tools.tools_dir() == tools
    ldd = subprocess.run(["ldd", tools / "llama-quantize"], capture_output=True, text=True)
    lines = [line for line in ldd.stdout.splitlines() if "libllama.so" in line]
    assert lines and all("not found" not in line for line in lines), ldd.stdout
    # the very file llama_cpp loads, not a second copy of llama.cpp
    loaded = Path(lines[0].split("=>")[1].split("(")[0].strip()).resolve()
    assert loaded.parent == (tools.parent).resolve()
    done = subprocess.run([tools / "llama-quantize", "--help"], capture_output=True, text=True)
    assert "usage" in (done.stdout + done.stderr).lower()
