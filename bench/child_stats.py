"""Run argv[1:], then print one JSON line: wall time, peak RSS of the command, return code."""

import json
import resource
import subprocess
import sys
import time

t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(
    json.dumps(
        {
            "wall_s": wall,
            "max_rss_kib": usage.ru_maxrss,
            "returncode": proc.returncode,
            "stderr_tail": proc.stderr.decode(errors="replace")[-2000:],
        }
    )
)
