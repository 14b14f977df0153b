"""`steps.quantize` in the manifest: every quant made, its files, its checks and the verdict.

Written by the quantize step (quantize/step.py `_record`), read by the card (accepted quants,
their eval metrics, the importance matrix) and by publish (accepted quants' files). Only
`accepted: true` quants are published.
"""

from __future__ import annotations

from typing import Any, NotRequired, Required

from typing_extensions import TypedDict  # pydantic reads only this one before Python 3.12

from medrelease.core.manifest import Files, StepRecord


class QuantCheck(TypedDict, total=False):
    """`quants[].checks.<name>`: tokenization, logits, contents, load, eval, build, ...

    Every check says `ok`; a check whose child process died also has `signal` or
    `exit_code`, `log_tail` (llama.cpp's last lines) and a one-line `detail`."""

    ok: Required[bool]
    detail: str
    warning: str
    metric: str  # logits: the measure judged first (ppl_ratio, kld_mean, ...)
    value: float | None
    threshold: float | None
    measures: dict[str, Any]
    limits: dict[str, float]  # the limits applied: Thresholds field -> value
    metrics: dict[str, float | None]  # eval: "<task>/<metric>" -> the quant's value
    signal: str
    exit_code: int
    log_tail: list[str]


class QuantEntry(TypedDict):
    """`quants[]`: one quant, accepted or not (a rejected one's files are under quant/rejected/)."""

    family: str  # gguf | awq
    type: str  # Q4_K_M, W4A16_ASYM, ...
    accepted: bool
    files: Files
    checks: dict[str, QuantCheck]
    reason: NotRequired[str | None]  # why it was rejected
    size: NotRequired[int]
    notes: NotRequired[list[str]]


class ImatrixRecord(TypedDict, total=False):
    """`imatrix`: the importance matrix the gguf quants were made with (published with them)."""

    calibration: Required[str]
    calibration_sha256: str
    file: str  # relative to the release folder
    sha256: Required[str]
    chunks: int
    context: int
    tool: str


class TextRecord(TypedDict):
    name: str
    sha256: str


class QuantizeRecord(StepRecord, total=False):
    quants: Required[list[QuantEntry]]
    merged: dict[str, str]  # {"content_hash": ...} of the model quantized
    imatrix: ImatrixRecord | None
    texts: dict[str, TextRecord]  # heldout / calibration / imatrix texts used
    settings: dict[str, Any]  # the recipe's quantize section as run
    # where the units ran: {"name": "local"} or {"name": "ray", "nodes": N}; not an input
    # (the numbers are alike wherever they ran), like the gate's
    executor: dict[str, Any]
