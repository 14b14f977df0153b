"""The accepted quants as a card shows them: files, quality measures, checks, a recommendation.

One row per quant (a GGUF type, an AWQ scheme) with all its files, so a scheme made of several
files is listed once and its checks belong to the scheme, not to one of its files. The quality
measures are the field's (KLD mean and p99, same-top-token rate, perplexity ratio against the
unquantized model), read from the quantize record's `logits` check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from medrelease.card.evidence import Evidence
from medrelease.card.probe_text import decoded, token_reader
from medrelease.records.quantize import QuantCheck, QuantEntry

# the measures a GGUF table shows, in its column order (quantize/checks.py logit_measures)
MEASURES = ("kld_mean", "kld_p99", "top1_agreement", "ppl_ratio")
# how a card names them (the record's keys are not for readers)
MEASURE_LABELS = {
    "kld_mean": "KLD mean",
    "kld_p99": "KLD p99",
    "top1_agreement": "top-1 agreement",
    "ppl_ratio": "PPL ratio",
}


class QuantFile(TypedDict):
    path: str  # in the release folder
    name: str  # in the published repo
    size: int
    sha256: str


class ProbeDifference(TypedDict):
    probe: str
    text: str | None  # the probe's text: recorded, or decoded from the merged ids
    merged: list[int]  # token ids of the merged tokenizer (first ones)
    runtime: list[int]  # token ids of the quant's runtime
    merged_tokens: list[str]  # the same as token pieces (empty without merged/ on disk)
    runtime_tokens: list[str]
    why: str


class CheckRow(TypedDict):
    name: str
    ok: bool
    result: str  # pass | pass, with differences | FAIL
    detail: str | None
    warning: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    differences: list[ProbeDifference]


class QuantRow(TypedDict):
    family: str
    type: str
    files: list[QuantFile]
    size: int
    checks: list[CheckRow]
    metrics: dict[str, float]  # eval: "<task>/<metric>" -> the quant's value
    measures: dict[str, float]  # MEASURES the logits check recorded
    recommendation: str
    recommended: bool  # the one the usage commands name


def quant_rows(evidence: Evidence) -> dict[str, list[QuantRow]]:
    """Accepted quants per family, each once, with its files, checks and measures."""
    out: dict[str, list[QuantRow]] = {"gguf": [], "awq": []}
    for q in evidence.quants:
        if q["accepted"]:
            out.setdefault(q["family"], []).append(_row(q))
    _name_tokens(out, evidence.merged_dir)
    for rows in out.values():
        _recommend(rows)
    return out


def _row(q: QuantEntry) -> QuantRow:
    files = [
        QuantFile(
            path=path,
            name=_published_name(q["family"], path),
            size=int(meta.get("size") or 0),
            sha256=str(meta.get("sha256") or ""),
        )
        for path, meta in sorted(q["files"].items())
    ]
    evaluated = q["checks"].get("eval")
    recorded = (evaluated.get("metrics") if evaluated else None) or {}
    metrics = {k: v for k, v in recorded.items() if v is not None}
    return QuantRow(
        family=q["family"],
        type=q["type"],
        files=files,
        size=sum(f["size"] for f in files),
        checks=[_check(name, c) for name, c in q["checks"].items()],
        metrics=metrics,
        measures=_measures(q["checks"].get("logits")),
        recommendation="",
        recommended=False,
    )


def _published_name(family: str, path: str) -> str:
    # publish/plan.py: a GGUF goes to the repo root, an AWQ file keeps its quant/awq/ layout
    return path.removeprefix("quant/awq/") if family == "awq" else path.rsplit("/", 1)[-1]


def _measures(check: QuantCheck | None) -> dict[str, float]:
    if not check:
        return {}
    found = {
        k: float(v)
        for k, v in (check.get("measures") or {}).items()
        if k in MEASURES and isinstance(v, int | float)
    }
    metric, value = check.get("metric"), check.get("value")
    if metric in MEASURES and value is not None:  # a record with the judged measure only
        found.setdefault(str(metric), float(value))
    return {k: found[k] for k in MEASURES if k in found}


def _check(name: str, c: QuantCheck) -> CheckRow:
    raw: Any = c  # the probe lists are free-form in the record
    differences = [
        ProbeDifference(
            probe=str(d.get("probe")),
            text=d.get("text"),
            merged=list(d.get("merged") or []),
            runtime=list(next((v for k, v in d.items() if k not in _PROBE_KEYS), None) or []),
            merged_tokens=[],
            runtime_tokens=[],
            why=str(d.get("why") or ""),
        )
        for d in [*(raw.get("mismatches") or []), *(raw.get("warnings") or [])]
        if isinstance(d, dict)
    ]
    ok = bool(c["ok"])
    result = "FAIL" if not ok else "pass, with differences" if differences else "pass"
    return CheckRow(
        name=name,
        ok=ok,
        result=result,
        detail=c.get("detail"),
        warning=c.get("warning"),
        metric=MEASURE_LABELS.get(str(c.get("metric")), c.get("metric")),
        value=c.get("value"),
        threshold=c.get("threshold"),
        differences=differences,
    )


_PROBE_KEYS = frozenset({"probe", "text", "merged", "why"})


def _name_tokens(quants: dict[str, list[QuantRow]], merged: Path | None) -> None:
    """Token pieces and text for every probe difference (the tokenizer is read only if one
    exists)."""
    diffs = [
        d for rows in quants.values() for r in rows for c in r["checks"] for d in c["differences"]
    ]
    reader = token_reader(merged) if diffs else None
    if reader is None:
        return
    pieces, tok = reader
    for d in diffs:
        d["merged_tokens"], d["runtime_tokens"] = pieces(d["merged"]), pieces(d["runtime"])
        d["text"] = d["text"] or decoded(tok, d["merged"])


# GGUF types from most to least faithful, with what a reader gives up (llama.cpp's own
# descriptions of the types, in plain words)
_GGUF_WORDS = {
    "F32": "full precision: the unquantized weights",
    "BF16": "16-bit: the unquantized weights",
    "F16": "16-bit: the unquantized weights",
    "Q8_0": "8-bit: practically lossless, large",
    "Q6_K": "6-bit: very close to the original",
    "Q5_K_M": "5-bit: close to the original",
    "Q5_K_S": "5-bit: close to the original, a little smaller",
    "Q4_K_M": "4-bit: the usual default, a good balance of size and quality",
    "Q4_K_S": "4-bit: slightly smaller than Q4_K_M, slightly lower quality",
    "Q4_0": "4-bit (legacy): fast on ARM, lower quality than Q4_K_M",
    "IQ4_XS": "4-bit (i-quant): smaller than Q4_K_M at similar quality",
    "Q3_K_L": "3-bit: low quality, for low memory",
    "Q3_K_M": "3-bit: low quality, for low memory",
    "Q3_K_S": "3-bit: low quality, for very low memory",
    "Q2_K": "2-bit: much lower quality, only when nothing larger fits",
}
# top-1 agreement from which a quant counts as faithful enough to recommend
FAITHFUL_TOP1 = 0.95


def _recommend(rows: list[QuantRow]) -> None:
    """A plain-words line per quant; the smallest faithful one is marked as the pick."""
    faithful = [r for r in rows if r["measures"].get("top1_agreement", 0.0) >= FAITHFUL_TOP1]
    pick = min(faithful, key=lambda r: r["size"]) if faithful else None
    for r in rows:
        words = _GGUF_WORDS.get(r["type"].upper(), "") if r["family"] == "gguf" else ""
        if r["family"] == "awq":
            words = "4-bit weights for GPU serving (vLLM, transformers)"
        top1 = r["measures"].get("top1_agreement")
        if top1 is not None:
            words += (
                f"{'; ' if words else ''}same next token as the original {top1:.1%} of the time"
            )
        if pick is not None and r is pick and len(rows) > 1:
            words = f"**Recommended**: {words}" if words else "**Recommended**"
        r["recommendation"] = words or "–"
    # the commands name the pick; without measures, the usual default or the first
    chosen = pick or next((r for r in rows if r["type"] == "Q4_K_M"), rows[0] if rows else None)
    if chosen is not None:
        chosen["recommended"] = True


def not_shipped(evidence: Evidence) -> dict[str, list[dict[str, Any]]]:
    """Rejected optional quants per family (`quantize.gguf.optional`, `quantize.awq.optional`),
    left out of the release, and why: the check, the measure, its value and its limit
    (`quants[].rejection`, quantize/verdict.py). A rejected required quant fails the quantize
    step, so no card is made from it."""
    out: dict[str, list[dict[str, Any]]] = {"gguf": [], "awq": []}
    for q in evidence.quants:
        if q["accepted"] or q.get("required", True):
            continue
        why = q.get("rejection")
        row = {
            "type": q["type"],
            "check": why["check"] if why else None,
            "measure": why["measure"] if why else None,
            "value": why["value"] if why else None,
            "limit": why["limit"] if why else None,
            "detail": why["detail"] if why else (q.get("reason") or "rejected"),
        }
        out.setdefault(q["family"], []).append(row)
    return out
