"""A merged model too big to load next to mergekit's memory is verified without loading it:
transformers builds it on "meta" (its own loading report) and the forward pass streams each
module's tensors from disk. Every check must give what the loading route gives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import medrelease.core.compute_dtype as compute_dtype
from medrelease.merge import verify as verify_mod
from merge.test_completeness import CUT, broken_copy, merged, verify  # noqa: F401

STREAM_SUFFIX = " (verified streaming its weights from disk)"


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where the weights take more than half the available memory."""
    monkeypatch.setattr(compute_dtype, "mem_available", lambda: 1)


def _load_route(folder: Path) -> bool:
    _, loaded = verify_mod._load(folder)
    return loaded.streamed


@pytest.mark.slow
def test_streamed_checks_equal_the_loaded_ones(merged, llama, monkeypatch):  # noqa: F811
    loaded = verify(merged, llama)
    assert not _load_route(merged)  # the tiny model fits: loaded as before
    monkeypatch.setattr(compute_dtype, "mem_available", lambda: 1)
    assert _load_route(merged)
    streamed = verify(merged, llama)
    assert list(streamed) == list(loaded)  # same checks, same order
    assert streamed["loads"]["detail"] == loaded["loads"]["detail"] + STREAM_SUFFIX
    for name in loaded:
        if name != "loads":
            assert streamed[name] == loaded[name], name
    assert all(c["ok"] for c in streamed.values()), streamed


@pytest.mark.slow
def test_streamed_model_holds_no_weights_and_gives_the_loaded_logits(merged, streaming):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM

    tok, loaded = verify_mod._load(merged)
    assert loaded.model is not None
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}
    enc = tok(verify_mod.ROUND_TRIP_TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        got = loaded.model(**enc).logits
        ref = AutoModelForCausalLM.from_pretrained(str(merged), dtype="auto")(**enc).logits
    assert got.dtype == ref.dtype  # the files' dtype, as the loading route computes
    assert torch.equal(got, ref)  # bit for bit the loaded model's
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}  # dropped again


@pytest.mark.slow
def test_streamed_missing_tensors_fail_completeness_as_loading_does(
    merged,  # noqa: F811
    llama,
    tmp_path,
    monkeypatch,
):
    folder = broken_copy(merged, tmp_path / "cut", drop=CUT)
    loaded = verify(folder, llama)
    monkeypatch.setattr(compute_dtype, "mem_available", lambda: 1)
    streamed = verify(folder, llama)
    assert streamed["completeness"] == loaded["completeness"]
    assert not streamed["completeness"]["ok"]
    # nothing to stream for the missing tensors: the forward pass is refused, not faked
    assert streamed["finite_logits"] == {
        "ok": False,
        "detail": "not run: the files lack tensors the model needs",
    }


@pytest.mark.slow
def test_streamed_nan_weights_are_found_without_a_scan(merged, tmp_path, streaming):  # noqa: F811
    from safetensors.torch import load_file, save_file

    folder = broken_copy(merged, tmp_path / "nan")
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = tensors[name].clone()
    tensors[name][0, 0] = math.nan
    save_file(tensors, str(path), metadata={"format": "pt"})
    checks = verify_mod.verify_model_folder(folder)  # no weights scan: read from the files
    assert checks["finite_weights"] == {
        "ok": False,
        "detail": f"NaN/Inf in 1 tensors, e.g. {name}",
    }
    assert not checks["finite_logits"]["ok"]  # the NaN reaches the logits
