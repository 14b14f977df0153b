"""Run argv[1:], then print one JSON line: wall time, peak RSS of the command, return code.

Two peaks: `max_rss_kib` is the largest single process's own peak (getrusage of the children,
exact but blind to processes that run at the same time), and `tree_rss_kib` the largest sum of
RSS over the command's whole process tree, sampled every 0.2 s from /proc (what the machine
must hold at once when a step runs a llama.cpp child beside its own work)."""

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kib(root: int) -> int:
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
    return sum(rss.get(p, 0) for p in tree)


t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = [0]
done = threading.Event()


def sample() -> None:
    while not done.wait(0.2):
        peak[0] = max(peak[0], tree_rss_kib(proc.pid))


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
            "returncode": proc.returncode,
            "stderr_tail": err.decode(errors="replace")[-2000:],
        }
    )
)
