"""A PNG of the gated metrics across the baselines, the merge and each quant.

One group of bars per gated metric, one bar per model in the order base, stages, merge,
quants, so a reader sees at a glance what the merge kept and what quantization cost.
Values come from gates/report.json (models) and the quantize record (quants' eval checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def chart_series(
    evaluation: dict[str, Any], quants: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(metric names, series label -> metric -> value); only metrics the gates ruled on."""
    metrics = evaluation["gated_metrics"] or [r["metric"] for r in evaluation["summary"]]
    by_metric = {r["metric"]: r for r in (*evaluation["summary"], *_subject_rows(evaluation))}
    metrics = [m for m in metrics if m in by_metric]
    # say which way is better on the axis itself: the bars of a rate read the other way
    lower = {m for m in metrics if not by_metric[m]["higher_is_better"]}
    series: dict[str, dict[str, float]] = {}
    cand = evaluation["candidate"]
    for model in [*evaluation["baselines"], cand]:
        label = f"{model} (merge)" if model == cand and "merge" not in model else model
        scores = {m: by_metric[m]["scores"] for m in metrics}
        vals = {m: s[model] for m, s in scores.items() if model in s}
        if vals:
            series[label] = vals
    for fam, rows in quants.items():
        for q in rows:
            vals = {m: float(q["metrics"][m]) for m in metrics if m in q["metrics"]}
            if vals:
                series[f"{fam.upper()} {q['type']}"] = vals
    return [f"{m} (lower is better)" if m in lower else m for m in metrics], {
        label: {(f"{m} (lower is better)" if m in lower else m): v for m, v in vals.items()}
        for label, vals in series.items()
    }


def _subject_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in evaluation["subjects"] for r in g["rows"]]


def render_chart(path: Path, metrics: list[str], series: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics) + 2), 4.0), dpi=100)
    try:
        for i, (label, vals) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(metrics))]
            ys = [vals.get(m, float("nan")) for m in metrics]
            ax.bar(xs, ys, width=width, label=label)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("score")
        ax.set_title("Gated metrics: baselines, merge and quants")
        ax.legend(fontsize=8, loc="best")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        # no "Software" stamp: the PNG depends only on the numbers
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
