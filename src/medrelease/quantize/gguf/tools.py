"""llama.cpp's `llama-imatrix` and `llama-quantize`, for importance-matrix quants.

llama-cpp-python exposes `llama_model_quantize`, but its `imatrix` parameter is a C++ map
pointer Python cannot fill, and it has no API to compute an importance matrix at all. So
importance-matrix quants run llama.cpp's own command-line tools, from one of two places:

* built with the bindings: `make install` hands pip `data/llama/tools_in_wheel.cmake`, which
  adds the two tools to llama-cpp-python's own cmake build. They link the libllama/libggml the
  bindings load and land in the wheel at `llama_cpp/lib/medrelease-llama-tools/`. llama.cpp is
  compiled once, and pip's wheel cache keeps the tools for the next install.
* built by `medrelease setup` when the installed llama-cpp-python has no tools (installed
  without `make`): from the llama.cpp source that the same version's sdist vendors, into
  `<venv>/lib/medrelease-llama-tools/`.

Either way the tools and the bindings come from the same llama.cpp source, so they speak the
same GGUF version, and a BUILD_INFO stamp says which version that was. Nothing is in the
repository and nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from medrelease.core.errors import EnvironmentProblem

TOOLS = ("llama-imatrix", "llama-quantize")
SETUP_HINT = "run `medrelease setup` (it builds llama.cpp's tools; needs cmake and a C++ compiler)"


def wheel_tools_dir() -> Path | None:
    """Where tools built with the bindings live (found without importing llama_cpp, which
    would load its shared libraries)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib" / "medrelease-llama-tools"


def built_tools_dir() -> Path:
    """Where `medrelease setup` builds the tools when the bindings came without them."""
    return Path(sys.prefix) / "lib" / "medrelease-llama-tools"


def tools_dir() -> Path:
    """The tools in use: those built with the bindings if present, else setup's own build."""
    wheel = wheel_tools_dir()
    if wheel is not None and tools_present(wheel):
        return wheel
    return built_tools_dir()


def tools_present(folder: Path | None = None) -> bool:
    folder = folder or tools_dir()
    return all(os.access(folder / name, os.X_OK) for name in TOOLS)


def tool_path(name: str) -> Path:
    """The path of one built tool, or a clear error saying how to build it."""
    path = tools_dir() / name
    if not os.access(path, os.X_OK):
        raise EnvironmentProblem(
            f"llama.cpp's `{name}` is not installed (looked in {tools_dir()})",
            hint=SETUP_HINT,
        )
    return path


def build_info(folder: Path | None = None) -> str:
    """The source the tools were built from, as recorded at build time (see `_origin`)."""
    stamp = (folder or tools_dir()) / "BUILD_INFO"
    return stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else "unknown"


def _progress(line: str) -> None:
    print(f"[llama-tools] {line}", file=sys.stderr, flush=True)


def _run(cmd: list[str], log: Path, what: str) -> None:
    with log.open("ab") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise EnvironmentProblem(
            f"{what} failed (exit {proc.returncode}); last log lines:\n{tail}",
            where=str(log),
            hint="check the compiler/cmake installation, then run `medrelease setup` again",
        )


def _download_sdist(version: str, dest: Path, log: Path) -> Path:
    # pip's cache makes repeated setups fast; --no-binary gets the source with vendor/llama.cpp
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    _run([*cmd, f"llama-cpp-python=={version}", "-d", str(dest)], log, "downloading the sdist")
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise EnvironmentProblem(f"pip downloaded no llama-cpp-python sdist into {dest}")
    return found[0]


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    roots = list(dest.glob("*/vendor/llama.cpp"))
    if not roots:
        raise EnvironmentProblem(f"{sdist.name} has no vendor/llama.cpp source")
    return roots[0]


def _origin(version: str, sdist: Path) -> str:
    """What the tools were built from. The sdist has no git history, so llama.cpp's own
    build number/commit are 0/unknown: the sdist's version and hash identify the source."""
    from medrelease.core.hashing import sha256_file_uncached

    return (
        f"llama-cpp-python=={version} vendor/llama.cpp (sdist sha256 {sha256_file_uncached(sdist)})"
    )


def build_tools(
    version: str,
    target: Path,
    jobs: int = 2,
    tools: tuple[str, ...] = TOOLS,
    cpu_flags: tuple[str, ...] = (),
) -> float:
    """Build `tools` into `target` (atomically); return the seconds it took.

    `cpu_flags`: extra ggml cmake flags (e.g. GGML_AVX2=ON); none gives generic CPU code. The
    benchmarks build llama-perplexity this way, for the bindings' instruction set
    (bench/route_tools.py)."""
    for program in ("cmake", "c++"):
        if shutil.which(program) is None:
            raise EnvironmentProblem(
                f"`{program}` is not installed: it is needed to build llama.cpp's tools",
                hint="install cmake and a C++ compiler (Debian: apt-get install cmake g++)",
            )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medrelease-llama-build-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "build.log"
        _progress(f"downloading llama-cpp-python=={version} source (pip cache) ...")
        sdist = _download_sdist(version, tmp / "sdist", log)
        _progress(f"extracting vendor/llama.cpp from {sdist.name} ...")
        source = _extract_llama_cpp(sdist, tmp / "src")
        build = tmp / "build"
        # static tools, no network client, generic CPU code so the binaries run on any x86-64
        # machine the venv is copied to
        configure = ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
        for flag in (
            "BUILD_SHARED_LIBS=OFF",
            "LLAMA_CURL=OFF",
            "GGML_NATIVE=OFF",
            "LLAMA_BUILD_TESTS=OFF",
            "LLAMA_BUILD_EXAMPLES=OFF",
            "LLAMA_BUILD_SERVER=OFF",
            *cpu_flags,
        ):
            configure.append(f"-D{flag}")
        _progress("configuring with cmake ...")
        _run(configure, log, "cmake configure")
        _progress(f"building {', '.join(tools)} with -j{jobs} (several minutes on 2 cores) ...")
        compile_cmd = ["cmake", "--build", str(build), "--config", "Release", f"-j{jobs}"]
        _run([*compile_cmd, "--target", *tools], log, "cmake build")
        staged = target.parent / f".mr-tmp-{target.name}-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for name in tools:
            built = build / "bin" / name
            if not built.is_file():
                raise EnvironmentProblem(f"the build did not produce {name}", where=str(build))
            shutil.copy2(built, staged / name)
        (staged / "BUILD_INFO").write_text(_origin(version, sdist) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return time.monotonic() - start


def provide_llama_tools() -> str:
    """`medrelease setup` provider: build the tools unless they match the installed bindings."""
    from importlib.metadata import version

    installed = version("llama-cpp-python")
    found = tools_dir()
    # tools from another llama-cpp-python version may write GGUFs the bindings cannot read
    if tools_present(found) and f"llama-cpp-python=={installed} " in build_info(found):
        return f"llama.cpp tools present in {found} ({build_info(found)})"
    target = built_tools_dir()
    _progress(
        f"no llama.cpp tools for llama-cpp-python=={installed} here (`make install` builds "
        "them with the bindings); building them from its sdist"
    )
    seconds = build_tools(installed, target)
    return f"llama.cpp tools built into {target} in {seconds:.0f} s ({build_info(target)})"
