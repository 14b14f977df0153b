"""`steps.quantize` in the manifest: every quant made, its files, its checks and the verdict.

Written by the quantize step (quantize/step.py `_record`), read by the card (accepted quants,
their eval metrics, the importance matrix, the optional quants not shipped and why) and by
publish (accepted quants' files). Only `accepted: true` quants are published. `status` is
`failed` when a required quant was rejected (quantize/verdict.py): release stops there.
"""

from __future__ import annotations

from typing import NotRequired, Required

from typing_extensions import TypedDict  # pydantic reads only this one before Python 3.12

from medrelease.core.manifest import ExecutorRecord, Files, Json, StepRecord


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
    measures: dict[str, Json]
    limits: dict[str, float]  # the limits applied: Thresholds field -> value
    metrics: dict[str, float | None]  # eval: "<task>/<metric>" -> the quant's value
    signal: str
    exit_code: int
    log_tail: list[str]


class Rejection(TypedDict):
    """`quants[].rejection`: why a quant was not shipped, from its first failed check.

    For the logits check: the measure that broke its limit (`kld_mean`), its value and the
    limit (`limit_key` names the recipe key that sets it: `max_kld_mean`); for any other check
    (tokenization, contents, load, build, eval, ...) `measure` is the check's name and value and
    limit are null. `detail` is the check's one line."""

    check: str
    measure: str
    value: float | None
    limit: float | None
    limit_key: str | None
    detail: str


class QuantEntry(TypedDict):
    """`quants[]`: one quant, accepted or not (a rejected one's files are under quant/rejected/)."""

    family: str  # gguf | awq
    type: str  # Q4_K_M, W4A16_ASYM, ...
    accepted: bool
    files: Files
    checks: dict[str, QuantCheck]
    reason: NotRequired[str | None]  # why it was rejected
    # a rejected required quant stops quantize and release (exit 5); a rejected optional one
    # (quantize.gguf.optional, quantize.awq.optional) is left out and the card says why.
    # Absent in records made before the rule: required.
    required: NotRequired[bool]
    rejection: NotRequired[Rejection | None]  # the first failed check; None when accepted
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
    settings: dict[str, Json]  # the recipe's quantize section as run
    # where the units ran: not an input (the numbers are alike wherever they ran)
    executor: ExecutorRecord
