"""Run argv[1:], then print one JSON line: wall time, peak RSS of the command, return code.

Two peaks: `max_rss_kib` is the largest single process's own peak (getrusage of the children,
exact but blind to processes that run at the same time), and `tree_rss_kib` the largest sum of
RSS over the command's whole process tree, sampled every 0.2 s from /proc (what the machine
must hold at once when a step runs a llama.cpp child beside its own work), with what each
process of the tree held at that moment (`tree_peak_parts`: what to shrink first)."""

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _name(pid: int) -> str:
    """A short name for a process: its command line's module or program, and pid."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    args = [a.decode(errors="replace") for a in argv if a]
    shown = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-m", "-c")), None)
    shown = shown or (args[1] if len(args) > 1 and args[0].endswith("python") else args[0])
    return f"{Path(shown.splitlines()[0][:60]).name} [{pid}]" if args else str(pid)


def tree_rss_kib(root: int) -> tuple[int, dict[str, int]]:
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(d.name)] = int(fields[1])
            rss[int(d.name)] = int(fields[21]) * PAGE_KIB
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    parts = {p: rss.get(p, 0) for p in tree}
    return sum(parts.values()), {_name(p): kib for p, kib in parts.items() if kib}


t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = [0]
peak_parts: dict[str, int] = {}
done = threading.Event()


def sample() -> None:
    while not done.wait(0.2):
        total, parts = tree_rss_kib(proc.pid)
        if total > peak[0]:
            peak[0] = total
            peak_parts.clear()
            peak_parts.update(parts)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
_, err = proc.communicate()
done.set()
sampler.join()
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(
    json.dumps(
        {
            "wall_s": wall,
            "max_rss_kib": usage.ru_maxrss,
            "tree_rss_kib": peak[0],
            "tree_peak_parts": peak_parts,
            "returncode": proc.returncode,
            "stderr_tail": err.decode(errors="replace")[-2000:],
        }
    )
)
