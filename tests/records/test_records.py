"""The typed records: strict checks with readable paths, and one spelling of lm_eval's flags."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from medrelease.core.errors import InputError
from medrelease.core.validate import check_record, record_problems
from medrelease.records.gate_report import GateReport, read_gate_report
from medrelease.records.lm_eval_command import lm_eval_command
from medrelease.records.quantize import QuantizeRecord

QUANTIZE = {
    "status": "done",
    "quants": [
        {"family": "gguf", "type": "Q8_0", "accepted": True, "reason": None,
         "files": {"quant/gguf/x-Q8_0.gguf": {"sha256": "a" * 64, "size": 12}},
         "checks": {"logits": {"ok": True, "metric": "ppl_ratio", "value": 1.01,
                               "threshold": 1.15, "later_key": [1, 2]}}},
    ],
    "written_by_a_newer_version": {"x": 1},
}  # fmt: skip


def test_a_conforming_record_has_no_problems_and_keeps_unknown_keys() -> None:
    data = copy.deepcopy(QUANTIZE)
    assert record_problems(QuantizeRecord, data) == []
    assert data == QUANTIZE  # checked, not converted: the reader keeps what it loaded


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("quants", 0, "accepted"), 1, "quants[0].accepted: input should be a valid boolean"),
        (("quants", 0, "files", "quant/gguf/x-Q8_0.gguf", "size"), "12",
         "quants[0].files.quant/gguf/x-Q8_0.gguf.size: input should be a valid integer (got '12')"),
        (("quants", 0, "checks", "logits", "value"), True, "checks.logits.value"),
        (("quants",), {"Q8_0": {}}, "quants: input should be a valid list"),
    ],
    ids=["no-coercion-to-bool", "string-size", "bool-is-no-number", "list"],
)  # fmt: skip
def test_problems_name_the_key(path: tuple[object, ...], value: object, expected: str) -> None:
    data = copy.deepcopy(QUANTIZE)
    target = data
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    problems = record_problems(QuantizeRecord, data)
    assert len(problems) == 1 and expected in problems[0], problems


def test_missing_keys_and_the_error_message() -> None:
    data = {"quants": [{"family": "gguf", "type": "Q8_0", "files": {}, "checks": {}}]}
    with pytest.raises(InputError) as info:
        check_record(
            QuantizeRecord, data, what="the quantize step's record", where="m.json",
            hint="re-run it", prefix="steps.quantize",
        )  # fmt: skip
    err = info.value
    assert err.exit_code == 3 and err.where == "m.json" and err.hint == "re-run it"
    assert str(err.message) == (
        "the quantize step's record is malformed: steps.quantize.status: missing; "
        "steps.quantize.quants[0].accepted: missing"
    )


def test_gate_report_json_and_semantics(tmp_path: Path) -> None:
    report = {
        "schema_version": 1, "passed": True, "candidate": "merged",
        "models": {"merged": {"kind": "merged", "content_hash": "h"}},
        "tasks": {"t": {"num_fewshot": 0}},
        "metrics": [{"metric": "t/acc", "values": {"merged": 0.5}}],
        "rules": [{"text": "t/acc >= 0.3", "passed": True}],
    }  # fmt: skip
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    loaded: GateReport = read_gate_report(path)
    assert loaded == report
    report["metrics"][0]["values"] = {"merged": "0.5"}  # type: ignore[index]
    path.write_text(json.dumps(report))
    with pytest.raises(InputError, match=r"'values' must map model -> number or null"):
        read_gate_report(path)
    path.write_text("{")
    with pytest.raises(InputError, match="is not valid JSON"):
        read_gate_report(path)


def test_lm_eval_command_flags() -> None:
    settings = {
        "num_fewshot": 5, "limit": 0.5, "apply_chat_template": True,
        "gen_kwargs": {"temperature": 0, "max_gen_toks": 64}, "batch_size": 8,
    }  # fmt: skip
    full = lm_eval_command(
        backend="hf", model_args=[("pretrained", "build/x/merged"), ("dtype", "float32")],
        task="mmlu_medical", settings=settings, include_paths=["/tmp/tasks"],
        batch_size=8, device="cpu", log_samples=True,
    )  # fmt: skip
    assert full == (
        "lm_eval --model hf --model_args pretrained=build/x/merged,dtype=float32 "
        "--tasks mmlu_medical --include_path /tmp/tasks --num_fewshot 5 --limit 0.5 "
        "--apply_chat_template --gen_kwargs temperature=0,max_gen_toks=64 "
        "--batch_size 8 --device cpu --log_samples"
    )
    bare = lm_eval_command(
        backend="hf", model_args=[("pretrained", "org/m")], task="t",
        settings={"num_fewshot": None, "limit": None, "apply_chat_template": False},
    )  # fmt: skip
    assert bare == "lm_eval --model hf --model_args pretrained=org/m --tasks t"
