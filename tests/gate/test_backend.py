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


# ---------- evaluation dtype (issue 11: float32 on a CPU without fast bf16, if it fits) ----------


def _bf16_checkpoint(folder: Path, n: int) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(n, dtype=torch.bfloat16)}, str(folder / "model.safetensors"))
    return folder


def test_eval_dtype_float32_when_all_models_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from medrelease.core import compute_dtype

    monkeypatch.setattr(compute_dtype, "cpu_fast_half", lambda dtype, flags=None: False)
    monkeypatch.setattr(compute_dtype, "mem_available", lambda: 1000)
    small = [_bf16_checkpoint(tmp_path / n, 50) for n in ("merged", "base")]  # 2 x 200 B f32
    choice = runner.eval_dtype("hf", "cpu", {}, small)
    assert choice["dtype"] == "float32" and "bfloat16 weights" in choice["reason"]
    # every model the gate holds counts: a third one tips it over half of MemAvailable
    more = [*small, _bf16_checkpoint(tmp_path / "grpo", 50)]
    streamed = runner.eval_dtype("hf", "cpu", {}, more)
    # ... then float32 is computed layer by layer over the bf16 weights (core/upcast.py) ...
    assert streamed["dtype"] == "float32" and streamed["per_layer"] is True
    # ... until the bf16 weights themselves leave too little room: their own dtype
    most = [*more, *(_bf16_checkpoint(tmp_path / f"m{i}", 100) for i in range(3))]
    assert runner.eval_dtype("hf", "cpu", {}, most)["dtype"] == "bfloat16"
    # the recipe wins; other backends and accelerators choose for themselves
    assert runner.eval_dtype("hf", "cpu", {"dtype": "bfloat16"}, small) == {
        "dtype": "bfloat16",
        "reason": "gates.model_args.dtype",
    }
    assert runner.eval_dtype("vllm", "cuda", {}, small)["dtype"] == "auto"
    assert runner.eval_dtype("hf", "cuda", {}, small)["dtype"] == "bfloat16"


def test_make_lm_passes_float32_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import lm_eval.api.registry as registry

    monkeypatch.setattr(registry, "get_model", lambda name: _Recorder)
    f32 = {"dtype": "float32", "reason": "r"}
    runner.make_lm("hf", Path("/m"), {"trust_remote_code": True}, 1, "cpu", f32)
    assert _Recorder.made[-1][0] == {
        "pretrained": "/m",
        "trust_remote_code": True,
        "dtype": "float32",
    }
    # the checkpoint's own dtype is lm-eval's default (auto): nothing added, nothing downcast
    runner.make_lm("hf", Path("/m"), {}, 1, "cpu", {"dtype": "bfloat16", "reason": "r"})
    assert _Recorder.made[-1][0] == {"pretrained": "/m"}
    runner.make_lm("hf", Path("/m"), {"dtype": "float16"}, 1, "cpu", f32)  # the recipe wins
    assert _Recorder.made[-1][0] == {"pretrained": "/m", "dtype": "float16"}


def test_make_lm_per_layer_loads_the_half_weights_and_upcasts_each_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lm_eval.api.registry as registry
    import torch

    class _HF:
        @classmethod
        def create_from_arg_obj(cls, args: dict[str, Any], extra: dict[str, Any]) -> Any:
            lm = cls()
            lm.args = args
            lm.model = torch.nn.Sequential(torch.nn.Embedding(8, 4), torch.nn.Linear(4, 8))
            lm.model.to(torch.bfloat16)
            return lm

    monkeypatch.setattr(registry, "get_model", lambda name: _HF)
    choice = {"dtype": "float32", "reason": "r", "per_layer": True}
    lm = runner.make_lm("hf", Path("/m"), {}, 1, "cpu", choice)
    assert lm.args == {"pretrained": "/m"}  # loaded in its own dtype, not as a float32 copy
    out = lm.model(torch.tensor([[1, 2, 3]]))
    assert out.dtype == torch.float32  # computed in float32 ...
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}  # ... stored as bf16


def test_lm_eval_describes_the_machine_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval's add_env_info (torch's collect_env: subprocesses) runs once, not per task."""
    import lm_eval.loggers.utils as lm_utils

    calls: list[int] = []

    def add_env_info(storage: dict[str, Any]) -> None:
        calls.append(1)
        storage.update(pretty_env_info="machine", lm_eval_version="0.4", nested={"a": [1]})

    monkeypatch.setattr(lm_utils, "add_env_info", add_env_info)
    monkeypatch.setattr(runner, "_ENV_INFO", {})
    first: dict[str, Any] = {"results": 1}
    second: dict[str, Any] = {}
    runner._env_info_once(first)
    runner._env_info_once(second)
    assert len(calls) == 1
    assert first == {"results": 1, "pretty_env_info": "machine", "lm_eval_version": "0.4",
                     "nested": {"a": [1]}}  # fmt: skip
    assert second == {k: v for k, v in first.items() if k != "results"}
    second["nested"]["a"].append(2)  # a copy each time: one result cannot change another
    assert first["nested"] == {"a": [1]}
