"""Run the medrelease benchmarks; print a markdown table and save it to docs/benchmarks.md.

    .venv/bin/python bench/run.py            # full: ~1 GiB stages for the merge
    .venv/bin/python bench/run.py --quick    # small sizes, for development
    .venv/bin/python bench/run.py --only startup,merge --no-write

Every figure is a ratio measured side by side in this one run (medrelease and the plain tool
alternate), the median of several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASES = ("startup", "release", "merge", "gguf", "gate")


def settings(quick: bool) -> dict[str, int]:
    if quick:
        return {"repeats": 3, "merge_mib": 64, "merge_repeats": 3, "hidden": 512,
                "gguf_mib": 64, "gate_limit": 10}  # fmt: skip
    return {"repeats": 3, "merge_mib": 1024, "merge_repeats": 2, "hidden": 2048,
            "gguf_mib": 128, "gate_limit": 20}  # fmt: skip


def run_case(name: str, work: Path, cache: Path, s: dict[str, int]) -> cases.CaseResult:
    if name == "startup":
        return cases.startup(max(5, s["repeats"]))
    if name == "merge":
        return cases.merge(work, cache, s["merge_mib"], s["merge_repeats"], s["hidden"])
    if name == "release":
        return cases.cached_release(work, cache, s["repeats"])
    if name == "gguf":
        return cases.gguf(work, cache, s["gguf_mib"], s["repeats"], min(s["hidden"], 1024))
    if name == "gate":
        return cases.gate(work, cache, 3, s["gate_limit"])
    raise SystemExit(f"unknown case {name!r}; choose from {', '.join(CASES)}")


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3f}"


def verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[ok]


def table(rows: list[cases.Row]) -> str:
    lines = [
        "| figure | medrelease | plain tool / reference | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.figure} | {r.ours} | {r.theirs} | {fmt_ratio(r.ratio)} | {r.target} "
            f"| {verdict(r.ok)} |"
        )
    notes = [f"- {r.figure.split(':')[0]}: {r.note}" for r in rows if r.note]
    return "\n".join(lines) + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")


def machine_text(m: dict[str, object]) -> str:
    v = m["versions"]
    assert isinstance(v, dict)
    busy = m["other_busy_processes"] or ["none seen"]
    assert isinstance(busy, list)
    return "\n".join(
        [
            f"- CPU: {m['cpu']}, {m['cores']} cores visible",
            f"- RAM: {m['ram_gib']} GiB; OS: {m['os']}",
            f"- Disk (workdir): {m['disk']}",
            f"- Load average at start (1, 5, 15 min): {m['load_avg']}",
            f"- Other busy processes at start: {', '.join(busy)}",
            "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (development)")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    s = settings(args.quick)
    work = args.workdir.resolve()
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    # medrelease's per-user file-facts cache: the bench's own, never the user's (the merge
    # case sets its own per run, to measure cold and warm)
    os.environ.setdefault("MEDRELEASE_CACHE_DIR", str(work / "user-cache"))
    machine = describe(work)
    rows: list[cases.Row] = []
    details: dict[str, object] = {}
    t0 = time.time()
    for name in [c.strip() for c in args.only.split(",") if c.strip()]:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t = time.time()
        try:
            result = run_case(name, work / name, cache, s)
        except Exception as exc:  # one broken case must not hide the others' figures
            traceback.print_exc()
            rows.append(cases.Row(name, "error", str(exc).splitlines()[0][:200], None, "", False))
            continue
        rows.extend(result.rows)
        details[name] = result.details
        print(f"[bench] {name} done in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
        if not args.no_write:  # after every case: a long run that is stopped keeps its figures
            machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
            write_doc(table(rows), machine, s, args.quick, time.time() - t0, details)
    print(table(rows))
    return 0


def write_doc(
    text: str, machine: dict[str, object], s: dict[str, int], quick: bool, took: float,
    details: dict[str, object],
) -> None:  # fmt: skip
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "--quick (small sizes)" if quick else "full"
    body = f"""# Benchmarks

Generated by `.venv/bin/python bench/run.py{" --quick" if quick else ""}` on {when}
({mode}; {took / 60:.1f} min). Re-run it to refresh this page.

Every ratio is measured side by side in one run: medrelease and the plain tool alternate,
each in a fresh process; figures are medians of the listed runs (seconds). Peak RSS is the
command's own maximum resident set (`getrusage(RUSAGE_CHILDREN)` of a fresh wrapper process).
Settings: {json.dumps(s)}.

## Machine

{machine_text(machine)}
- Load average at the end: {machine.get("load_avg_end")}

The machine was shared with other agents' processes while this ran (see the load average):
absolute times are noisy; the side-by-side ratios are the figures to read. The merge of
~1 GiB stages runs {s["merge_repeats"]} times per tool (fewer than the other cases, to keep
the run short); the others run {s["repeats"]} times (start-up: at least 5).

## Results

{text}

## What medrelease adds, and where its time goes

- `medrelease merge` runs the same mergekit library call as `mergekit-yaml`, plus preflight
  (safetensors headers, NaN/Inf scan of every tensor, tokenizer vs vocab size, disk space),
  sha256 of every input and output file, and a verification that loads the merged model in
  transformers and runs a forward pass. Those are the `phases_s` above (from `manifest.json`
  `steps.merge.timings`). Each input file is read once for both its sha256 and its NaN/Inf
  scan (integer views of the raw bits, two files at a time); the merged weights are hashed
  and scanned in a thread while the model loads for verification.
- Cold vs warm merge: medrelease remembers each large file's sha256 and scan verdict in a
  per-user cache keyed by the file's identity (path, size, mtime, ctime, inode), so a merge
  over stages an earlier merge already read (a recipe being iterated) reads them not at
  all. Cold runs start from an empty cache; warm runs reuse one. Both are reported.
- `medrelease quantize` runs llama.cpp's converter and `llama_model_quantize` exactly as the
  direct route does, then checks every quant (tokenization against transformers, logits /
  perplexity ratio on held-out text). The transformers reference (import, model load,
  forward pass) runs in a thread while the converter runs in its subprocess; its duration is
  shown as "reference (alongside)".
- `medrelease gate` runs lm-evaluation-harness in process over every task and model and loads
  each model once for all tasks; the direct route pays Python + lm-eval + model start-up per
  `lm_eval` invocation.

Raw details:

```json
{json.dumps(details, indent=2, default=str)}
```
"""
    out = ROOT / "docs" / "benchmarks.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(body)
    tmp.replace(out)


if __name__ == "__main__":
    sys.exit(main())
