"""Every number in the rendered cards equals the number in gates/report.json (or manifest).

The cards are parsed as Markdown tables; each numeric cell is compared with the report value
formatted by the card's rounding rule (card.decimals, default 4).
"""

from __future__ import annotations

import re

from card.card_fixture import REPORT, quantize_record

D = 4


def fmt(v: float) -> str:
    return f"{v:.{D}f}"


def fmt_delta(v: float) -> str:
    text = f"{v:+.{D}f}"
    return text if float(text) != 0 else f"{0:.{D}f}"


def section(text: str, heading: str) -> str:
    """Text from `## heading` to the next `## ` heading, fenced code removed."""
    start = text.index(f"## {heading}\n")
    nxt = text.find("\n## ", start + 3)
    body = text[start : nxt if nxt != -1 else None]
    return re.sub(r"```.*?```", "", body, flags=re.S)


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(the ### heading above, header cells, rows) of every Markdown table in `text`."""
    out = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:]
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            out.append((heading, header, rows))
            continue
        i += 1
    return out


def by_metric() -> dict[str, dict]:
    return {m["metric"]: m for m in REPORT["metrics"]}


def check_metric_row(metric: str, header: list[str], row: list[str], seen: set[str]) -> None:
    m = by_metric()[metric]
    cand = REPORT["candidate"]
    seen.add(metric)
    for col, cell in zip(header[1:], row[1:], strict=True):
        if col.startswith("Δ vs "):
            base = col.removeprefix("Δ vs ")
            assert cell == fmt_delta(m["values"][cand] - m["values"][base]), (metric, col, cell)
            continue
        value, _, err = cell.partition(" ± ")
        assert value == fmt(m["values"][col]), (metric, col, cell)
        if err:
            assert err == fmt(m["stderr"][col]), (metric, col, cell)


def test_every_evaluation_number_equals_the_report(rendered):
    ev = section(rendered["model"], "Evaluation")
    found = tables(ev)
    assert len(found) == 4  # summary, one per-subject table, gates, task settings
    seen: set[str] = set()
    models = [REPORT["candidate"], "base", "grpo"]
    for heading, header, rows in found:
        if header[0] == "metric":  # summary: candidate + baselines, then deltas
            assert header[1:4] == models
            for row in rows:
                metric = row[0].split("`")[1]
                check_metric_row(metric, header, row, seen)
        elif header[0] == "subject":
            task, _, rest = heading.partition(": ")
            name = rest.removesuffix(" per subject")
            for row in rows:
                check_metric_row(f"{task}/{row[0]}/{name}", header, row, seen)
        elif header[0] == "rule":
            assert [r[0].strip("`") for r in rows] == [r["text"] for r in REPORT["rules"]]
            for row, rule in zip(rows, REPORT["rules"], strict=True):
                for cell, key in zip(row[1:4], ("candidate", "baseline", "delta"), strict=True):
                    want = rule[key]
                    expect = "–" if want is None else (fmt_delta if key == "delta" else fmt)(want)
                    assert cell == expect, (rule["text"], key, cell)
                assert row[4].startswith("pass" if rule["passed"] else "FAIL")
        elif header[0] == "task":
            for row in rows:
                t = REPORT["tasks"][row[0]]
                assert row[3] == str(t["num_fewshot"])
                assert row[4] == (str(t["limit"]) if t["limit"] is not None else "all")
                assert row[6] == str(t["n_samples"])
        else:
            raise AssertionError(f"unexpected table {header}")
    assert seen == set(by_metric()), "every report metric appears in the card"


def test_no_stray_numbers_in_the_evaluation_tables(rendered):
    """A number typed into a template (not from the report) would show up here."""
    ev = section(rendered["model"], "Evaluation")
    allowed = {
        fmt(v) for m in REPORT["metrics"] for v in (*m["values"].values(), *m["stderr"].values())
    }
    for m in REPORT["metrics"]:
        for a in m["values"].values():
            for b in m["values"].values():
                allowed.add(fmt_delta(a - b))
    for r in REPORT["rules"]:
        allowed |= {fmt(r["candidate"])} | ({fmt(r["baseline"])} if r["baseline"] else set())
        allowed |= {fmt_delta(r["delta"])} if r["delta"] is not None else set()
    for t in REPORT["tasks"].values():
        allowed |= {str(t[k]) for k in ("version", "num_fewshot", "limit", "n_samples")}
    for _, _, rows in tables(ev):
        for row in rows:
            for cell in row:
                cell = re.sub(
                    r"`[^`]*`", "", cell
                )  # names and rule texts, verbatim from the report
                for rule in REPORT["rules"]:  # the gate's own reason text
                    cell = cell.replace(rule["reason"], "")
                for tok in re.findall(r"[-+]?\d+\.\d+|\b\d+\b", cell):
                    assert tok in allowed, f"{tok!r} in {row} is not from the report"


def test_model_index_values_are_the_report_values_unrounded(rendered):
    from huggingface_hub import ModelCard

    card = ModelCard(rendered["model"])
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert got == {m["metric"]: m["values"]["merged"] for m in REPORT["metrics"]}


def test_quant_cards_numbers_come_from_manifest_and_report(rendered):
    quants = {q["type"]: q for q in quantize_record()["quants"]}
    text = rendered["gguf"]
    ((_, header, rows),) = [
        t for t in tables(section(text, "Quality against the unquantized model"))
    ]
    assert header == ["metric", "merged (unquantized)", "Q8_0", "Q4_K_M"]
    (row,) = rows
    assert row[1] == fmt(by_metric()["mmlu_medical/acc"]["values"]["merged"])
    assert row[2] == fmt(quants["Q8_0"]["checks"]["eval"]["metrics"]["mmlu_medical/acc"])
    assert row[3] == fmt(quants["Q4_K_M"]["checks"]["eval"]["metrics"]["mmlu_medical/acc"])
    # the GGUF card's "Files" section became "Which file to download": the measures per file,
    # each check with its value and limit, and the checksums (same facts, one table each)
    found = tables(section(text, "Which file to download"))
    files = next(t for t in found if "KLD mean" in t[1])
    checks = next(t for t in found if t[1][:2] == ["type", "check"])
    sums = next(t for t in found if "sha256" in t[1])
    assert files[1][:8] == [
        "file", "type", "size", "KLD mean", "KLD p99", "top-1 agreement", "PPL ratio",
        "in plain words",
    ]  # fmt: skip
    for row in files[2]:
        measures = quants[row[1]]["checks"]["logits"]["measures"]
        assert row[3:5] == [fmt(measures["kld_mean"]), fmt(measures["kld_p99"])]
        assert row[5] == f"{100 * measures['top1_agreement']:.1f}%"
        assert row[6] == fmt(measures["ppl_ratio"])
    logits = [r for r in checks[2] if r[1] == "logits"]
    assert len(logits) == 2
    for row in logits:
        q = quants[row[0]]
        assert f"PPL ratio {fmt(q['checks']['logits']['value'])} (limit" in row[3]
    for row in sums[2]:
        q = quants[row[1]]
        (meta,) = q["files"].values()
        assert row[3].strip("`") == meta["sha256"]
    assert "Q2_K" not in text, "a rejected quant must not appear"


def test_a_missing_score_is_a_dash_not_a_number(tmp_path):
    import copy

    from card.card_fixture import load, release_for_cards
    from medrelease.card.step import card_release
    from medrelease.core.console import Reporter

    report = copy.deepcopy(REPORT)
    anatomy = next(m for m in report["metrics"] if m["metric"] == "mmlu_medical/anatomy/acc")
    anatomy["values"]["grpo"] = None
    anatomy["stderr"]["grpo"] = None
    recipe, workdir = release_for_cards(tmp_path, report=report)
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    text = (workdir / "tiny-med" / "card" / "README.md").read_text()
    assert "| anatomy | 0.5200 | 0.4800 | – | +0.0400 | – |" in text
