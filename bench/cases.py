"""The benchmark cases: each times medrelease and the plain tool side by side in one run."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from measure import Run, Series, disk_speed, run_measured, side_by_side, side_by_side3
from synthetic import build_stage, tokenizer_folder, weight_bytes

VENV_BIN = Path(sys.executable).parent
MEDRELEASE = str(VENV_BIN / "medrelease")
DEMO_TASKS = Path(__file__).resolve().parents[1] / "src/medrelease/data/demo/tasks"
SEED = 1234
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class Row:
    figure: str
    ours: str
    theirs: str
    ratio: float | None
    target: str
    ok: bool | None
    note: str = ""


@dataclass
class CaseResult:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def release_block(name: str) -> dict[str, Any]:
    return {"name": name, "version": "0.1.0", "repo": f"bench/{name}", "license": "apache-2.0"}


LINEAR = {
    "merge_method": "linear",
    "models": [
        {"model": "sft", "parameters": {"weight": 0.5}},
        {"model": "grpo", "parameters": {"weight": 0.5}},
    ],
    "dtype": "float32",
}


def ratio_row(figure: str, a: Series, b: Series, target: float, unit: str = "s") -> Row:
    r = a.wall / b.wall
    return Row(
        figure,
        f"{a.wall:.2f} {unit} ({a.walls()})",
        f"{b.wall:.2f} {unit} ({b.walls()})",
        r,
        f"<= {target:.2f}",
        r <= target,
    )


# --- CLI start-up ---------------------------------------------------------------------------
def startup(repeats: int) -> CaseResult:
    ours, theirs = side_by_side(
        lambda i: run_measured([MEDRELEASE, "--help"]),
        lambda i: run_measured([str(VENV_BIN / "mergekit-yaml"), "--help"]),
        repeats,
    )
    row = Row(
        "CLI start-up: `medrelease --help` vs `mergekit-yaml --help`",
        f"{ours.wall:.3f} s ({ours.walls()})",
        f"{theirs.wall:.3f} s ({theirs.walls()})",
        ours.wall / theirs.wall,
        "medrelease < 0.30 s",
        ours.wall < 0.3,
    )
    return CaseResult([row], {"ours_s": ours.wall, "theirs_s": theirs.wall})


# --- merge ----------------------------------------------------------------------------------
def merge(work: Path, cache: Path, size_mib: int, repeats: int, hidden: int) -> CaseResult:
    tok = tokenizer_folder(cache)
    sft = build_stage(cache / f"sft-{size_mib}", target_mib=size_mib, seed=1, tokenizer=tok,
                      hidden=hidden)  # fmt: skip
    grpo = build_stage(cache / f"grpo-{size_mib}", target_mib=size_mib, seed=2, tokenizer=tok,
                       hidden=hidden)  # fmt: skip
    stage_bytes = weight_bytes(sft)
    recipe = write_yaml(
        work / "merge-recipe.yaml",
        {"release": release_block("bench-merge"), "stages": {"sft": str(sft), "grpo": str(grpo)},
         "merge": LINEAR, "seed": SEED},
    )  # fmt: skip
    mk_cfg = write_yaml(
        work / "mergekit.yml",
        {**LINEAR, "models": [{"model": str(sft), "parameters": {"weight": 0.5}},
                              {"model": str(grpo), "parameters": {"weight": 0.5}}]},
    )  # fmt: skip
    phases: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    # medrelease remembers each stage file's sha256 and NaN/Inf verdict per user (keyed by the
    # file's identity), so a merge over stages an earlier merge already read is "warm". Both
    # are measured: cold runs get an empty cache folder each time, warm runs one primed once.
    warm_cache = fresh(work / "user-cache-warm")

    def medrelease_merge(mode: str) -> Run:
        wd = fresh(work / "mr")
        cache_dir = fresh(work / "user-cache-cold") if mode == "cold" else warm_cache
        env = {**OFFLINE, "MEDRELEASE_CACHE_DIR": str(cache_dir)}
        run = run_measured([MEDRELEASE, "merge", str(recipe), "--workdir", str(wd)], env=env)
        manifest = json.loads((wd / "bench-merge" / "manifest.json").read_text())
        phases[mode].append(manifest["steps"]["merge"]["timings"]["phases_s"])
        shutil.rmtree(wd)
        return run

    def ours(i: int) -> Run:
        return medrelease_merge("cold")

    def ours_warm(i: int) -> Run:
        return medrelease_merge("warm")

    def theirs(i: int) -> Run:
        out = work / "mk"
        shutil.rmtree(out, ignore_errors=True)
        run = run_measured(
            [str(VENV_BIN / "mergekit-yaml"), str(mk_cfg), str(out), "--random-seed", str(SEED)],
            env=OFFLINE,
        )
        shutil.rmtree(out)
        return run

    medrelease_merge("warm")  # prime the warm cache (not timed)
    phases["warm"].clear()
    a, b, w = side_by_side3(ours, theirs, ours_warm, repeats)
    write_mib, read_mib = disk_speed(work / "disk", max(256, size_mib))
    # a linear merge of two stages reads both and writes one of the same size
    read_b, write_b = 2 * stage_bytes, stage_bytes
    disk_floor = read_b / 2**20 / read_mib + write_b / 2**20 / write_mib
    mean_phases = {mode: mean_of(p) for mode, p in phases.items()}
    size = f"{stage_bytes / 2**30:.2f} GiB/stage"
    rows = [
        ratio_row(
            f"Merge wall time, cold (stages never read before), linear, 2 stages x {size}: "
            "medrelease / mergekit-yaml",
            a,
            b,
            1.05,
        ),
        ratio_row(
            f"Merge wall time, warm (same stages, read by an earlier merge), 2 stages x {size}: "
            "medrelease / mergekit-yaml",
            w,
            b,
            1.05,
        ),
        Row(
            "Merge peak RSS: medrelease / mergekit-yaml",
            f"{a.rss:.0f} MiB",
            f"{b.rss:.0f} MiB",
            a.rss / b.rss,
            "(report)",
            None,
        ),
        Row(
            "Merge time vs disk read+write limit for the bytes involved",
            f"{a.wall:.2f} s",
            f"{disk_floor:.2f} s (read {read_b / 2**30:.2f} GiB at {read_mib:.0f} MiB/s, "
            f"write {write_b / 2**30:.2f} GiB at {write_mib:.0f} MiB/s)",
            a.wall / disk_floor,
            "(report)",
            None,
            f"mergekit-yaml alone: {b.wall / disk_floor:.2f}x the disk limit",
        ),
    ]
    for row, mode in ((rows[0], "cold"), (rows[1], "warm")):
        row.note = "medrelease phases (mean s): " + ", ".join(
            f"{k} {v}" for k, v in mean_phases[mode].items()
        )
    return CaseResult(
        rows,
        {"stage_bytes": stage_bytes, "phases_s": mean_phases, "disk_write_mib_s": write_mib,
         "disk_read_mib_s": read_mib, "repeats": repeats, "warm_s": w.wall},
    )  # fmt: skip


def mean_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)] if runs else []
    return {k: round(sum(r.get(k, 0) for r in runs) / len(runs), 2) for k in keys}


# --- the tiny whole release (cached re-run, gate) ---------------------------------------------
def tiny_family(cache: Path) -> dict[str, Path]:
    from medrelease.testing.tiny import TinySpec, build_tiny_model, derive_stage

    root = cache / "tiny"
    if not (root / "sft" / "config.json").is_file():
        base = build_tiny_model(root / "base", TinySpec(seed=1))
        derive_stage(base, root / "sft", seed=101, scale=0.02)
        derive_stage(base, root / "grpo", seed=103, scale=0.06)
    return {n: root / n for n in ("base", "sft", "grpo")}


def gate_section(tasks: list[str], baselines: list[str], limit: int) -> dict[str, Any]:
    return {
        "backend": "hf",
        "device": "cpu",
        "batch_size": 16,
        "baselines": baselines,
        "tasks": [
            {"name": t, "task_yaml": str(DEMO_TASKS / f"{t}.yaml"), "limit": limit} for t in tasks
        ],
        "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
    }


def tiny_recipe(work: Path, fam: dict[str, Path], name: str, gates: dict[str, Any]) -> Path:
    return write_yaml(
        work / f"{name}.yaml",
        {"release": release_block(name),
         "stages": {k: str(v) for k, v in fam.items()},
         "merge": LINEAR, "output": {"tokenizer_from": "base"},
         "gates": gates, "quantize": {"gguf": {"types": ["Q8_0"]}},
         "card": {"stage_licenses": {k: "apache-2.0" for k in fam}}},
    )  # fmt: skip


def cached_release(work: Path, cache: Path, repeats: int) -> CaseResult:
    from medrelease.localhub import serve

    fam = tiny_family(cache)
    recipe = tiny_recipe(work, fam, "bench-release", gate_section(["demo_mcq"], [], 20))
    wd = fresh(work / "release")
    token = "hf_benchLocalHubToken0123456789"
    with serve(fresh(work / "hub"), tokens={token: "bench"}) as hub:
        env = {"HF_TOKEN": token, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
        cmd = [MEDRELEASE, "release", str(recipe), "--workdir", str(wd), "--endpoint", hub.url]
        first = run_measured(cmd, env=env)
        runs = Series([run_measured(cmd, env=env) for _ in range(repeats)])
    row = Row(
        "Cached re-run of a whole release (merge, gate, quantize, card, publish), nothing changed",
        f"{runs.wall:.2f} s ({runs.walls()})",
        f"first run {first.wall_s:.1f} s",
        runs.wall / first.wall_s,
        "< 2 s",
        runs.wall < 2.0,
    )
    return CaseResult([row], {"first_s": first.wall_s, "rerun_s": runs.wall, "workdir": str(wd)})


# --- GGUF -----------------------------------------------------------------------------------
DIRECT_GGUF = Path(__file__).with_name("direct_gguf.py")


def gguf(work: Path, cache: Path, size_mib: int, repeats: int, hidden: int) -> CaseResult:
    tok = tokenizer_folder(cache)
    model = build_stage(cache / f"gguf-{size_mib}", target_mib=size_mib, seed=3, tokenizer=tok,
                        hidden=hidden)  # fmt: skip
    recipe = write_yaml(
        work / "gguf-recipe.yaml",
        {"release": release_block("bench-gguf"), "stages": {"sft": str(model), "grpo": str(model)},
         "merge": LINEAR, "quantize": {"gguf": {"types": ["Q8_0"], "intermediate": "f16"}}},
    )  # fmt: skip
    phases: list[dict[str, float]] = []

    def ours(i: int) -> Run:
        wd = fresh(work / "q")
        shutil.copytree(model, wd / "bench-gguf" / "merged")
        cmd = [MEDRELEASE, "quantize", str(recipe), "--workdir", str(wd), "--threads", "2"]
        run = run_measured(cmd, env=OFFLINE)
        manifest = json.loads((wd / "bench-gguf" / "manifest.json").read_text())
        timings = manifest["steps"]["quantize"].get("timings", {})
        # the reference runs alongside the conversion: shown apart, it is not on the clock
        background = {f"{k} (alongside)": v for k, v in timings.get("background_s", {}).items()}
        phases.append({**timings.get("phases_s", {}), **background})
        shutil.rmtree(wd)
        return run

    def theirs(i: int) -> Run:
        out = fresh(work / "qd")
        run = run_measured([sys.executable, str(DIRECT_GGUF), str(model), str(out), "Q8_0"],
                           env=OFFLINE)  # fmt: skip
        shutil.rmtree(out)
        return run

    a, b = side_by_side(ours, theirs, repeats)
    row = ratio_row(
        f"GGUF f16 conversion + Q8_0 quantization ({weight_bytes(model) / 2**20:.0f} MiB f32 "
        "model): `medrelease quantize` / converter + llama_model_quantize",
        a,
        b,
        1.05,
    )
    mean = mean_of(phases)
    row.note = "medrelease phases (mean s): " + ", ".join(f"{k} {v}" for k, v in mean.items())
    return CaseResult([row], {"phases_s": mean})


# --- gate -----------------------------------------------------------------------------------
def _direct_commands(report: dict[str, Any], out: Path) -> list[list[str]]:
    cmds = []
    for i, line in enumerate(report["reproduce"]):  # the report's own lm_eval commands
        argv = shlex.split(line)
        argv[0] = str(VENV_BIN / "lm_eval")
        cmds.append([*argv, "--output_path", str(out / str(i))])
    return cmds


def gate(work: Path, cache: Path, repeats: int, limit: int) -> CaseResult:
    fam = tiny_family(cache)
    rows = []
    details: dict[str, Any] = {}
    for label, tasks, baselines in (
        ("single", ["demo_mcq"], []),
        ("several", ["demo_mcq", "demo_format"], ["base"]),
    ):
        name = f"bench-gate-{label}"
        recipe = tiny_recipe(work, fam, name, gate_section(tasks, baselines, limit))
        wd = fresh(work / name)
        run_measured([MEDRELEASE, "merge", str(recipe), "--workdir", str(wd)], env=OFFLINE)
        # --no-cache: every run really evaluates, as each lm_eval run does
        cmd = [MEDRELEASE, "gate", str(recipe), "--workdir", str(wd), "--no-cache"]
        run_measured(cmd, env=OFFLINE)  # warm the OS caches and write the report
        report = json.loads((wd / name / "gates" / "report.json").read_text())
        direct = _direct_commands(report, work / "lm_eval_out")
        env = {**OFFLINE, "PYTHONPATH": str(DEMO_TASKS)}

        def theirs(i: int, direct: list[list[str]] = direct, env: dict[str, str] = env) -> Run:
            runs = [run_measured(c, env=env) for c in direct]
            return Run(sum(r.wall_s for r in runs), max(r.max_rss_mib for r in runs), 0)

        def ours(i: int, cmd: list[str] = cmd) -> Run:
            return run_measured(cmd, env=OFFLINE)

        a, b = side_by_side(ours, theirs, repeats)
        n = len(direct)
        if label == "single":
            rows.append(ratio_row(
                f"Gate, 1 task x 1 model (limit {limit}): `medrelease gate` / `lm_eval`",
                a, b, 1.05))  # fmt: skip
        else:
            rows.append(Row(
                f"Gate, {len(tasks)} tasks x {1 + len(baselines)} models: speed-up of one "
                f"`medrelease gate` over {n} `lm_eval` runs",
                f"{a.wall:.2f} s ({a.walls()})", f"{b.wall:.2f} s ({b.walls()})",
                b.wall / a.wall, "> 1 (report)", b.wall / a.wall > 1.0,
                "ratio here is lm_eval / medrelease (a speed-up)"))  # fmt: skip
        details[label] = {"ours_s": a.wall, "theirs_s": b.wall, "direct_runs": n}
    return CaseResult(rows, details)
