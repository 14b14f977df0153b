"""The sweep's results in <build>/<release>/sweep/: report.json (typed record, built from the
study's database alone, so a resumed or a `--show` run writes the same), front.png, the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from medrelease.core.atomic import atomic_write_bytes, atomic_write_json
from medrelease.core.errors import UsageError

REPORT_SCHEMA_VERSION = 1


State = Literal["complete", "pruned", "fail", "running", "waiting"]


RECORD = "record"  # the Optuna user attribute holding a trial's record (JSON)


class MetricValue(TypedDict):
    value: float | None
    stderr: float | None


class TrialEntry(TypedDict):
    number: int
    state: State
    params: dict[str, Any]
    values: list[float | None] | None
    metrics: dict[str, MetricValue]
    feasible: bool | None
    reason: str | None
    duration_s: float | None
    weights_hash: str | None
    items: NotRequired[dict[str, int]]
    merge_s: NotRequired[float]  # the trial's merge (the merge step, in scratch)
    lm_eval_s: NotRequired[float]  # inside lm-eval: forward passes and lm-eval's own work
    forward_s: NotRequired[float]  # the forward passes alone; duration - forward_s: overhead
    duplicate_of: NotRequired[int]
    retry_of: NotRequired[int]


class SweepReport(TypedDict):
    schema_version: int
    study: str
    storage: str
    sampler: str
    seed: int
    objectives: list[dict[str, str]]
    constraints: list[str]
    search: dict[
        str, dict[str, Any]
    ]  # label -> {text, form, split, start, count, items, subtasks, gate_items}
    baselines: dict[str, dict[str, MetricValue]]  # name -> metric -> search-split value
    pruning: dict[str, Any] | None
    trials: list[TrialEntry]
    front: list[int]  # trial numbers on the Pareto front (feasible, complete)
    best: int | None  # the best trial (one objective), or the front's first by objective 1
    items: dict[str, int]  # evaluated and saved by pruning, over all trials


def _state(t: Any) -> State:
    state: State = str(t.state.name).lower()  # type: ignore[assignment]
    return state


def trial_entries(study: Any) -> list[TrialEntry]:
    out: list[TrialEntry] = []
    for t in study.get_trials(deepcopy=False):
        rec = t.user_attrs.get(RECORD) or {}
        entry: TrialEntry = {
            "number": t.number,
            "state": _state(t),
            "params": dict(t.params),
            "values": _values(t, rec),
            "metrics": rec.get("metrics") or {},
            "feasible": rec.get("feasible"),
            "reason": rec.get("reason") or (None if rec else _no_record_reason(t)),
            "duration_s": rec.get("duration_s"),
            "weights_hash": rec.get("weights_hash"),
        }
        for key in ("items", "merge_s", "lm_eval_s", "forward_s", "duplicate_of", "retry_of"):
            if key in rec:
                entry[key] = rec[key]  # type: ignore[literal-required,unused-ignore]
        out.append(entry)
    return out


def _values(t: Any, rec: dict[str, Any]) -> list[float | None] | None:
    """The trial's objective values. A pruned trial's are its metrics over the items it was
    evaluated on (its record): Optuna gives it the last value reported to the pruner, which is
    one item's score, not the trial's."""
    if _state(t) == "pruned" and rec.get("values") is not None:
        return list(rec["values"])
    return list(t.values) if t.values is not None else rec.get("values")


def _no_record_reason(t: Any) -> str | None:
    return "interrupted (the run was killed); re-run" if _state(t) == "fail" else None


def pareto_front(trials: list[TrialEntry], directions: list[str]) -> list[int]:
    """Feasible complete trials no other such trial dominates (duplicates: the first only)."""
    pool = [
        t
        for t in trials
        if t["state"] == "complete" and t["feasible"] and "duplicate_of" not in t and t["values"]
    ]
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]

    def key(t: TrialEntry) -> list[float]:
        return [s * float(v or 0.0) for s, v in zip(sign, t["values"] or [], strict=False)]

    front = []
    for t in pool:
        kt = key(t)
        dominated = any(
            all(a >= b for a, b in zip(key(o), kt, strict=True))
            and any(a > b for a, b in zip(key(o), kt, strict=True))
            for o in pool
            if o is not t
        )
        if not dominated:
            front.append(t)
    front.sort(key=lambda t: [-x for x in key(t)] + [t["number"]])
    return [t["number"] for t in front]


def build_report(
    study: Any, loaded: Any, stasks: list[Any], baselines: Any, ctx: Any
) -> SweepReport:
    sweep = ctx.sweep
    trials = trial_entries(study)
    directions = [o.direction for o in sweep.objectives]
    front = pareto_front(trials, directions)
    gates = loaded.recipe.gates
    limits = {t.label: t.limit for t in gates.tasks}
    rules = [r.metric for r in (gates.rules if sweep.constraints == "gates" else [])]
    texts = [f"{r.metric} ({r.kind})" for r in gates.rules] if rules else []
    texts += [f"{r.metric} ({r.kind})" for r in sweep.extra_constraints]
    base_vals: dict[str, dict[str, MetricValue]] = {}
    for b in baselines:
        vals: dict[str, MetricValue] = {}
        for s in stasks:
            for name, m in ctx.baseline_outcomes[s.task.label][b.name]["metrics"].items():
                vals[name] = {"value": m["value"], "stderr": m["stderr"]}
        base_vals[b.name] = vals
    items = {"evaluated": 0, "saved": 0}
    for t in trials:
        if "items" in t and "duplicate_of" not in t:
            items["evaluated"] += t["items"]["evaluated"]
            items["saved"] += t["items"]["saved"]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "study": study.study_name,
        "storage": _redact_url(ctx.storage),
        "sampler": sweep.sampler_name,
        "seed": sweep.seed,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in sweep.objectives],
        "constraints": texts,
        "search": {
            s.task.label: {
                "text": s.text,
                "form": s.form,
                "split": s.split,
                # a range of the gate's split: the same indices in every subtask
                "start": next(iter(s.leaves.values()))[0] if s.form == "range" else None,
                "count": len(next(iter(s.leaves.values()))) if s.form == "range" else None,
                "items": s.total,
                "subtasks": len(s.leaves),
                "gate_items": limits.get(s.task.label),
            }
            for s in stasks
        },
        "baselines": base_vals,
        "pruning": (sweep.pruning.model_dump() if sweep.pruning else None),
        "trials": trials,
        "front": front,
        "best": front[0] if front else None,
        "items": items,
    }


def _redact_url(url: str) -> str:
    """A database URL without its password (the report may be published with the card)."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def write_report(
    study: Any, loaded: Any, stasks: list[Any], baselines: Any, ctx: Any, folder: Path
) -> tuple[SweepReport, Path]:
    report = build_report(study, loaded, stasks, baselines, ctx)
    path = folder / "report.json"
    atomic_write_json(path, report)
    write_front_png(report, folder / "front.png")
    return report, path


def read_report(folder: Path) -> SweepReport:
    path = folder / "report.json"
    if not path.is_file():
        raise UsageError(
            f"no sweep report at {path}",
            hint="run `medrelease sweep RECIPE` first (same --workdir)",
        )
    data: SweepReport = json.loads(path.read_text())
    return data


def write_front_png(report: SweepReport, path: Path) -> None:
    """Objective 1 against trial number (one objective) or against objective 2; the front
    joined, infeasible trials as x, pruned ones as open triangles (their partial values)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objs = [o["metric"] for o in report["objectives"]]
    two = len(objs) >= 2
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    groups: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("feasible", "infeasible", "pruned", "front")
    }
    front = set(report["front"])
    for t in report["trials"]:
        vals = t["values"] or []
        if not vals or vals[0] is None or (two and (len(vals) < 2 or vals[1] is None)):
            continue
        x = float(vals[1] or 0.0) if two else float(t["number"])
        y = float(vals[0] or 0.0)
        if t["state"] == "pruned":
            kind = "pruned"
        elif t["state"] != "complete":
            continue
        elif not t["feasible"]:
            kind = "infeasible"
        else:
            kind = "front" if t["number"] in front else "feasible"
        groups[kind][0].append(x)
        groups[kind][1].append(y)
    style = {
        "feasible": dict(marker="o", color="tab:blue", linestyle="none"),
        "front": dict(marker="*", color="tab:red", markersize=12, linestyle="none"),
        "infeasible": dict(marker="x", color="tab:gray", linestyle="none"),
        "pruned": dict(marker="^", color="tab:orange", fillstyle="none", linestyle="none"),
    }
    for kind, (xs, ys) in groups.items():
        if xs:
            ax.plot(xs, ys, label=f"{kind} ({len(xs)})", **style[kind])  # type: ignore[arg-type]
    ax.set_xlabel(objs[1] if two else "trial")
    ax.set_ylabel(objs[0])
    ax.set_title(f"{report['study']} ({report['sampler']}, {len(report['trials'])} trials)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def table_rows(report: SweepReport) -> tuple[list[str], list[list[str]]]:
    """The table printed at the end of a run and by --show (plain strings)."""
    params = sorted({k for t in report["trials"] for k in t["params"]})
    objs = [o["metric"] for o in report["objectives"]]
    short = [p.replace(".parameters.", ".") for p in params]  # models.0.weight
    header = ["trial", "state", "feasible", *short, *objs, "items", "s"]
    rows = []
    front = set(report["front"])
    for t in report["trials"]:
        mark = "*" if t["number"] in front else ""
        state = t["state"] + (f" (=#{t['duplicate_of']})" if "duplicate_of" in t else "")
        feas = "" if t["feasible"] is None else ("yes" if t["feasible"] else "no")
        cells = [f"{t['number']}{mark}", state, feas]
        cells += [_cell(t["params"].get(p)) for p in params]
        for o in objs:
            m = t["metrics"].get(o)
            cells.append(_pm(m) if m else "")
        items = t.get("items")
        cells.append(f"{items['evaluated']}/{items['total']}" if items else "")
        cells.append(f"{t['duration_s']:.1f}" if t["duration_s"] is not None else "")
        rows.append(cells)
    return header, rows


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def _pm(m: MetricValue) -> str:
    if m["value"] is None:
        return ""
    return f"{m['value']:.3f}" + (f" ± {m['stderr']:.3f}" if m["stderr"] is not None else "")


def render_table(report: SweepReport) -> Any:
    from rich.table import Table

    header, rows = table_rows(report)
    table = Table(title=f"sweep {report['study']}: * = on the front, best = {report['best']}")
    for h in header:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    return table
