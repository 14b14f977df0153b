"""llama.cpp's own command-line tools for the scripted route (bench/real_size.py, quantize).

The field's way of checking quants is llama.cpp's `llama-quantize` and `llama-perplexity
--kl-divergence-base/--kl-divergence`. medrelease's install builds `llama-quantize` into the
wheel but not `llama-perplexity`, so the benchmark builds both here, from the llama.cpp source
that the installed llama-cpp-python's sdist vendors (the same source as the bindings), with
the same instruction set as the bindings (`LLAMA_CPU_FLAGS` in the Makefile): a route compiled
for another CPU level would be a slower or faster peer for reasons that are not the tools'.

    .venv/bin/python bench/route_tools.py      # prints the folder; builds it once (minutes)
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import version
from pathlib import Path

ROUTE_TOOLS = ("llama-perplexity", "llama-quantize")
# the Makefile's LLAMA_CPU_FLAGS without GGML_NATIVE (build_tools sets it OFF): x86-64-v3
X86_64_V3 = ("GGML_AVX=ON", "GGML_AVX2=ON", "GGML_FMA=ON", "GGML_F16C=ON", "GGML_BMI2=ON")


def route_tools_dir() -> Path:
    """The built tools' folder, keyed by the bindings' version and the CPU level."""
    level = "x86-64-v3" if platform.machine() == "x86_64" else platform.machine()
    v = version("llama-cpp-python")
    return Path.home() / ".cache" / "medrelease" / "route-tools" / f"{v}-{level}"


def ensure_route_tools() -> Path:
    from medrelease.quantize.gguf.tools import build_tools

    folder = route_tools_dir()
    if all((folder / t).is_file() for t in ROUTE_TOOLS):
        return folder
    flags = X86_64_V3 if platform.machine() == "x86_64" else ()
    seconds = build_tools(version("llama-cpp-python"), folder, tools=ROUTE_TOOLS, cpu_flags=flags)
    print(f"built {', '.join(ROUTE_TOOLS)} into {folder} in {seconds:.0f} s", file=sys.stderr)
    return folder


if __name__ == "__main__":
    print(ensure_route_tools())
