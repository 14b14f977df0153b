"""The metrics chart: a PNG beside the card, shown in it, plotting the report's numbers."""

from __future__ import annotations

from card_fixture import REPORT, quantize_record

from medrelease.card.chart import chart_series, render_chart
from medrelease.card.context import evaluation


def test_chart_is_written_and_linked(release, rendered):
    _, workdir = release
    png = workdir / "tiny-med" / "card" / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "![Gated metrics across the baselines, the merge and the quants](metrics.png)"
        in (rendered["model"])
    )


def test_series_are_the_gated_metrics_of_every_model_and_quant():
    from medrelease.card.context import quant_rows
    from medrelease.card.evidence import Evidence

    ev = Evidence(
        manifest=None,  # type: ignore[arg-type]
        merge={},
        report=REPORT,
        report_sha256="",
        quantize=quantize_record(),
    )
    metrics, series = chart_series(evaluation(REPORT), quant_rows(ev))
    assert metrics == [
        "ifeval/prompt_level_strict_acc",
        "mmlu_medical/acc",
        "medical_safety/violation_rate (lower is better)",
    ]
    assert list(series) == ["base", "grpo", "merged", "GGUF Q8_0", "GGUF Q4_K_M", "AWQ W4A16_ASYM"]
    assert series["merged"]["mmlu_medical/acc"] == 0.513333
    assert series["base"]["medical_safety/violation_rate (lower is better)"] == 0.109375
    assert series["GGUF Q4_K_M"] == {"mmlu_medical/acc": 0.493333}


def test_render_chart_without_display(tmp_path):
    render_chart(tmp_path / "c.png", ["a"], {"m": {"a": 0.5}})
    assert (tmp_path / "c.png").stat().st_size > 1000
