"""A PNG of the gated metrics across the baselines, the merge and each quant.

One panel per gated metric, one horizontal bar per model in the order base, stages, merge,
quants, so a reader sees at a glance what the merge kept and what quantization cost. Each bar
carries its value as text (a zero is a labelled empty bar, not a missing one) and its
measured standard error as an error bar. Colours say what a bar is (a baseline stage, the
merge, a quant) in the Okabe-Ito palette, which colour-blind readers tell apart; the key sits
below the panels, never over a bar. Drawn 800 px wide: the width the Hub shows a card at.
Values come from gates/report.json (models) and the quantize record (quants' eval checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# Okabe & Ito (2008), "Color Universal Design": distinct under every common colour-vision
# deficiency
KIND_COLOURS = {"baseline": "#999999", "merge": "#0072B2", "quant": "#E69F00"}
KIND_LABELS = {"baseline": "stages / baselines", "merge": "the merge", "quant": "quants"}
WIDTH_IN, DPI = 8.0, 100  # 800 px
LEGEND_IN = 0.7  # the key's band below the panels


class ChartData(NamedTuple):
    metrics: list[str]  # axis titles, "(lower is better)" where it applies
    series: dict[str, dict[str, float]]  # bar label -> metric -> value
    errors: dict[str, dict[str, float]]  # bar label -> metric -> stderr (where measured)
    kinds: dict[str, str]  # bar label -> baseline | merge | quant


def chart_series(
    evaluation: Mapping[str, Any], quants: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(metric names, series label -> metric -> value); only metrics the gates ruled on."""
    data = chart_data(evaluation, quants)
    return data.metrics, data.series


def chart_data(
    evaluation: Mapping[str, Any], quants: Mapping[str, Sequence[Mapping[str, Any]]]
) -> ChartData:
    metrics = evaluation["gated_metrics"] or [r["metric"] for r in evaluation["summary"]]
    rows = [*evaluation["summary"], *(r for g in evaluation["subjects"] for r in g["rows"])]
    by_metric = {r["metric"]: r for r in rows}
    metrics = [m for m in metrics if m in by_metric]
    # say which way is better on the axis itself: the bars of a rate read the other way
    lower = {m for m in metrics if not by_metric[m]["higher_is_better"]}

    def title(m: str) -> str:
        return f"{m} (lower is better)" if m in lower else m

    series: dict[str, dict[str, float]] = {}
    errors: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    cand = evaluation["candidate"]
    for model in [*evaluation["baselines"], cand]:
        label = f"{model} (merge)" if model == cand and "merge" not in model else model
        if any(model in by_metric[m]["scores"] for m in metrics):
            series[label] = {
                title(m): by_metric[m]["scores"][model]
                for m in metrics
                if model in by_metric[m]["scores"]
            }
            errors[label] = {
                title(m): by_metric[m]["stderr"][model]
                for m in metrics
                if model in by_metric[m].get("stderr", {})
            }
            kinds[label] = "merge" if model == cand else "baseline"
    for fam, qrows in quants.items():
        for q in qrows:
            vals = {title(m): float(q["metrics"][m]) for m in metrics if m in q["metrics"]}
            if vals:
                label = f"{fam.upper()} {q['type']}"
                series[label], errors[label], kinds[label] = vals, {}, "quant"
    return ChartData([title(m) for m in metrics], series, errors, kinds)


def render_chart(
    path: Path,
    metrics: list[str],
    series: dict[str, dict[str, float]],
    errors: dict[str, dict[str, float]] | None = None,
    kinds: dict[str, str] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    errors, kinds = errors or {}, kinds or {}
    labels = list(series)
    bar_h = 0.32  # inches per bar: 11 pt labels stay readable at the Hub's width
    heights = [len(labels) * bar_h + 0.7 for _ in metrics]
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(WIDTH_IN, sum(heights) + LEGEND_IN),
        dpi=DPI,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    try:
        for ax, metric in zip(axes[:, 0], metrics, strict=True):
            ys = list(range(len(labels)))[::-1]  # first series on top
            vals = [series[lb].get(metric) for lb in labels]
            # no stderr recorded (a quant's eval): no error bar at all, not a zero-width one
            errs = [errors.get(lb, {}).get(metric, math.nan) for lb in labels]
            reach = [0.0 if math.isnan(e) else e for e in errs]
            colours = [KIND_COLOURS[kinds.get(lb, "baseline")] for lb in labels]
            ax.barh(
                ys,
                [v if v is not None else 0.0 for v in vals],
                xerr=errs,
                color=colours,
                height=0.7,
                error_kw={"ecolor": "#333333", "capsize": 3, "linewidth": 1},
            )
            top = max([(v or 0.0) + e for v, e in zip(vals, reach, strict=True)] + [1e-9])
            for y, v, e, c in zip(ys, vals, reach, colours, strict=True):
                # the value as text right of the bar, and a zero drawn as a stub in the bar's
                # colour: a measured 0 is seen, and told apart from a model not measured
                text = "not measured" if v is None else f"{v:.3f}"
                ax.text((v or 0.0) + e + top * 0.012, y, text, va="center", fontsize=10)
                if v == 0:
                    ax.plot([0], [y], marker="|", ms=14, mew=4, color=c, clip_on=False, zorder=3)
            ax.set_xlim(0, top * 1.18)
            ax.set_yticks(ys)
            ax.set_yticklabels(labels, fontsize=11)
            ax.set_title(metric, fontsize=12, loc="left")
            ax.axvline(0, color="#333333", linewidth=0.8)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=10)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        used = [k for k in KIND_COLOURS if k in kinds.values()] or ["baseline"]
        fig.legend(
            handles=[Patch(color=KIND_COLOURS[k], label=KIND_LABELS[k]) for k in used],
            loc="lower center",
            ncol=len(used) + 1,
            fontsize=10,
            frameon=False,
            title="error bars: ± one standard error, as measured",
            title_fontsize=9,
        )
        fig.tight_layout(rect=(0, LEGEND_IN / (sum(heights) + LEGEND_IN), 1, 1))
        # no "Software" stamp: the PNG depends only on the numbers
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
