"""The evaluation backend is lm-eval's model registry: hf by default, vllm etc. pass through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medrelease.core.errors import InputError
from medrelease.gate import runner


class _Recorder:
    made: list[tuple[dict[str, Any], dict[str, Any]]] = []

    @classmethod
    def create_from_arg_obj(cls, args: dict[str, Any], extra: dict[str, Any]) -> str:
        cls.made.append((args, extra))
        return "lm"


def test_backend_and_model_args_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import lm_eval.api.registry as registry

    asked: list[str] = []

    def get_model(name: str) -> type:
        asked.append(name)
        return _Recorder

    monkeypatch.setattr(registry, "get_model", get_model)
    lm = runner.make_lm(
        "vllm", Path("/models/m"), {"tensor_parallel_size": 2, "dtype": "bfloat16"}, 16, "cuda"
    )
    assert lm == "lm" and asked == ["vllm"]
    args, extra = _Recorder.made[-1]
    assert args == {"pretrained": "/models/m", "tensor_parallel_size": 2, "dtype": "bfloat16"}
    assert extra == {"batch_size": 16, "device": "cuda"}


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no model backend 'nonsense'"):
        runner.make_lm("nonsense", Path("/m"), {}, 1, "cpu")


@pytest.mark.slow  # the first lm_eval.models import takes seconds
def test_hf_is_registered() -> None:
    from lm_eval.api.registry import get_model

    assert get_model("hf").__name__ == "HFLM"
