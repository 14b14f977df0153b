"""The metrics chart: a PNG beside the card, shown in it, plotting the report's numbers."""

from __future__ import annotations

from card.card_fixture import REPORT, quantize_record
from medrelease.card.chart import chart_data, chart_series, render_chart
from medrelease.card.evaluation import evaluation


def test_chart_is_written_and_linked(release, rendered):
    _, workdir = release
    png = workdir / "tiny-med" / "card" / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "![Gated metrics across the baselines, the merge and the quants](metrics.png)"
        in (rendered["model"])
    )


def test_series_are_the_gated_metrics_of_every_model_and_quant():
    from medrelease.card.evidence import Evidence
    from medrelease.card.quants import quant_rows

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


def test_error_bars_are_the_measured_stderr_and_colours_say_what_a_bar_is():
    from medrelease.card.evidence import Evidence
    from medrelease.card.quants import quant_rows

    ev = Evidence(None, {}, REPORT, "", quantize_record())  # type: ignore[arg-type]
    data = chart_data(evaluation(REPORT), quant_rows(ev))
    assert data.errors["merged"]["mmlu_medical/acc"] == 0.040912
    assert data.errors["base"]["medical_safety/violation_rate (lower is better)"] == 0.039289
    assert data.errors["GGUF Q8_0"] == {}  # a quant's eval records no stderr: no bar drawn
    assert data.kinds == {
        "base": "baseline", "grpo": "baseline", "merged": "merge",
        "GGUF Q8_0": "quant", "GGUF Q4_K_M": "quant", "AWQ W4A16_ASYM": "quant",
    }  # fmt: skip


def test_chart_is_hub_width_and_a_zero_is_drawn(tmp_path):
    from PIL import Image

    path = tmp_path / "c.png"
    render_chart(path, ["a", "b"], {"x": {"a": 0.0, "b": 0.5}, "y": {"a": 0.25}}, {"x": {"b": 0.1}})
    with Image.open(path) as img:
        assert img.size[0] == 800  # the width the Hub shows a card at: no downscaling
    # the zero's value label is drawn (text right of an empty bar), so the image differs from
    # one where x has no value for a
    other = tmp_path / "d.png"
    render_chart(other, ["a", "b"], {"x": {"b": 0.5}, "y": {"a": 0.25}}, {"x": {"b": 0.1}})
    assert path.read_bytes() != other.read_bytes()
