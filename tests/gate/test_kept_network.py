"""A sweep's model takes the network the last trial's model gave back and copies its own weights
into it (medrelease.gate.kept_network): the same network a fresh load builds, bit for bit, and
no reuse wherever that could differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # lm-eval's hf module takes seconds to import

TEXT = "The patient presents with chest pain radiating to the left arm. The most likely"


def _perturbed(src: Path, out: Path, dtype: str, seed: int = 7) -> Path:
    """`src` with every tensor changed, stored in `dtype` (same config and tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=getattr(torch, dtype))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_((torch.randn(p.shape, generator=gen) * 0.02).to(p.dtype))
    model.save_pretrained(str(out))
    for f in src.iterdir():  # tokenizer and config files as they were
        if f.is_file() and not f.name.startswith("model"):
            shutil.copyfile(f, out / f.name)
    return out


def _tied(src: Path, out: Path) -> Path:
    """`src` re-saved with tied input and output embeddings (the files hold no lm_head)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    model.save_pretrained(str(out))
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("model") and f.name != "config.json":
            shutil.copyfile(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two folders per case that differ only in their weights."""
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("kept")
    out = {}
    llama = build_tiny_model(root / "llama", TinySpec(arch="llama", seed=1))
    out["llama"] = (llama, _perturbed(llama, root / "llama-b", "float32"))
    qwen3 = _tied(build_tiny_model(root / "q", TinySpec(arch="qwen3", seed=2)), root / "qwen3")
    out["qwen3-tied-bf16"] = (
        _perturbed(qwen3, root / "qwen3-a", "bfloat16", seed=3),
        _perturbed(qwen3, root / "qwen3-b", "bfloat16", seed=4),
    )
    return out


def _logits(lm: Any) -> Any:
    import torch

    ids = torch.tensor([lm.tok_encode(TEXT)])
    with torch.no_grad():
        return lm.model(ids).logits


def _fresh_model(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    return model


def _check_reused_equals_fresh(first: Path, second: Path) -> None:
    import torch

    from medrelease.gate.kept_network import NETWORKS
    from medrelease.gate.runner import make_lm

    NETWORKS.clear()
    dtype = {"dtype": "float32"}
    lm_a = make_lm("hf", first, {}, 2, "cpu", dtype, keep_network=True)
    assert not lm_a.network_reused
    network = lm_a.model
    logits_a = _logits(lm_a)
    lm_a.give_back_network()
    lm_b = make_lm("hf", second, {}, 2, "cpu", dtype, keep_network=True)
    assert lm_b.network_reused and lm_b.model is network
    assert NETWORKS.take(lm_b.network_key) is None  # taken: no second model shares it
    fresh = _fresh_model(second)
    ids = torch.tensor([lm_b.tok_encode(TEXT)])
    with torch.no_grad():
        want = fresh(ids).logits
    got = _logits(lm_b)
    assert torch.equal(got, want)  # bit for bit
    assert not torch.equal(got, logits_a)  # and the weights did change
    mine, theirs = lm_b.model.state_dict(), fresh.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert lm_b.model.name_or_path == str(second)
    lm_b.give_back_network()
    NETWORKS.clear()


@pytest.mark.parametrize("case", ["llama", "qwen3-tied-bf16"])
def test_a_kept_network_with_new_weights_is_a_fresh_load(
    pairs: dict[str, tuple[Path, Path]], case: str
) -> None:
    _check_reused_equals_fresh(*pairs[case])


def test_the_real_model_bf16_weights_into_a_float32_network(tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct: bf16 files, tied embeddings, its real tokenizer."""
    from medrelease.testing.realmodels import real_model

    base = real_model("smollm2-135m")
    _check_reused_equals_fresh(base, _perturbed(base, tmp_path / "b", "bfloat16"))


def test_no_key_where_the_network_could_differ(pairs: dict[str, tuple[Path, Path]]) -> None:
    from medrelease.gate.kept_network import network_key

    a, b = pairs["llama"]
    dtype = {"dtype": "float32"}
    assert network_key(a, {}, dtype, "cpu") == network_key(b, {}, dtype, "cpu") is not None
    assert network_key(a, {}, dtype, "cpu") != network_key(a, {}, None, "cpu")
    assert network_key(a, {}, dtype, "cpu") != network_key(a, {"max_length": 64}, dtype, "cpu")
    for args in ({"peft": "x"}, {"delta": "x"}, {"load_in_4bit": True}, {"device_map": "auto"}):
        assert network_key(a, args, dtype, "cpu") is None, args


def _copy(folder: Path, out: Path) -> Path:
    shutil.copytree(folder, out)
    return out


def test_files_that_do_not_map_one_to_one_are_loaded_the_usual_way(
    pairs: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from medrelease.gate.kept_network import load_weights_into, network_key
    from medrelease.gate.runner import make_lm

    a, b = pairs["llama"]
    lm = make_lm("hf", a, {}, 2, "cpu", {"dtype": "float32"})
    network = lm.model
    before = {k: v.clone() for k, v in network.state_dict().items()}
    weights = load_file(str(b / "model.safetensors"))

    def variant(name: str, tensors: dict[str, Any]) -> Path:
        out = _copy(b, tmp_path / name)
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out

    first = next(iter(weights))
    renamed = {("x." + k if k == first else k): v for k, v in weights.items()}
    missing = {k: v for k, v in weights.items() if k != first}
    reshaped = {**weights, first: weights[first][:1]}
    for folder in (variant("renamed", renamed), variant("missing", missing),
                   variant("reshaped", reshaped)):  # fmt: skip
        assert not load_weights_into(network, folder), folder.name
        now = network.state_dict()
        assert all(torch.equal(now[k], before[k]) for k in before), folder.name

    # weights in another format: no key, so no reuse
    pickled = _copy(b, tmp_path / "bin")
    (pickled / "model.safetensors").unlink()
    torch.save(weights, pickled / "pytorch_model.bin")
    assert network_key(pickled, {}, None, "cpu") is None
    # a pre-quantized checkpoint: no reuse
    quant = _copy(b, tmp_path / "quant")
    cfg = json.loads((quant / "config.json").read_text())
    (quant / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"q": 1}}))
    assert network_key(quant, {}, None, "cpu") is None
    # a sharded folder: its index's shards
    sharded = _copy(b, tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    keys = sorted(weights)
    halves = {"m-1.safetensors": keys[: len(keys) // 2], "m-2.safetensors": keys[len(keys) // 2 :]}
    for shard, names in halves.items():
        save_file({k: weights[k] for k in names}, str(sharded / shard), metadata={"format": "pt"})
    index = {"weight_map": {k: s for s, names in halves.items() for k in names}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert load_weights_into(network, sharded)
    now = network.state_dict()
    assert all(torch.equal(now[k], weights[k]) for k in weights)


def test_a_network_is_taken_by_one_model_at_a_time() -> None:
    from medrelease.gate.kept_network import KeptNetworks

    kept = KeptNetworks(size=1)
    one, two = object(), object()
    kept.give_back("k", one)
    assert kept.take("k") is one and kept.take("k") is None
    kept.give_back("k", one)
    kept.give_back("other", two)  # size 1: the older one goes
    assert kept.take("k") is None and kept.take("other") is two
    assert kept.take(None) is None


def test_a_network_too_large_for_the_machines_memory_is_not_kept() -> None:
    """It would stay in memory through the next trial's merge."""
    import torch

    from medrelease.gate.kept_network import KeptNetworks, cpu_bytes, memory_share_limit

    network = torch.nn.Linear(64, 64)  # 64*64 + 64 float32 values
    assert cpu_bytes(network) == (64 * 64 + 64) * 4
    tight = KeptNetworks(limit_bytes=cpu_bytes(network) - 1)
    tight.give_back("k", network)
    assert tight.take("k") is None
    roomy = KeptNetworks(limit_bytes=cpu_bytes(network))
    roomy.give_back("k", network)
    assert roomy.take("k") is network
    assert 0 < memory_share_limit() < 2**60


class _FakeLM:
    """Stands in for the hf model: counts whether its network was given back."""

    def __init__(self) -> None:
        self.given_back = 0

    def give_back_network(self) -> None:
        self.given_back += 1


@pytest.mark.parametrize(
    ("error", "kept"), [("stop", True), ("runtime", False), ("interrupt", False)]
)
def test_a_network_is_kept_only_after_evaluations_that_ended_between_forward_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str, kept: bool
) -> None:
    """A pruned run stops between forward passes (the network is whole); an error or Ctrl-C may
    come inside one, with hooks mid-way (medrelease.core.upcast): that network is dropped."""
    from types import SimpleNamespace

    import medrelease.sweep.evaluate as evaluate
    from medrelease.gate.config import GatesConfig
    from medrelease.gate.live_items import StopEvaluation
    from medrelease.gate.models import GateModel
    from medrelease.sweep.evaluate import EvalSettings, ModelEvaluator

    raised = {
        "stop": StopEvaluation("pruned"),
        "runtime": RuntimeError("out of memory"),
        "interrupt": KeyboardInterrupt(),
    }[error]

    def fail(*args: Any, **kwargs: Any) -> None:
        raise raised

    monkeypatch.setattr(evaluate, "run_lm_eval", fail)
    model = GateModel("candidate", tmp_path, "sha256:x", {"kind": "merged", "content_hash": "x"})
    ev = ModelEvaluator(model, EvalSettings(GatesConfig(), "cpu", None, tmp_path / "cache"))
    lm = _FakeLM()
    ev._lm = lm
    stask = SimpleNamespace(task=SimpleNamespace(settings={"batch_size": 2}), fingerprint="f")
    with pytest.raises(type(raised)):
        ev.outcome(stask, {"leaf": [0]})  # type: ignore[arg-type]
    ev.close()
    assert lm.given_back == (1 if kept else 0)


def test_a_network_of_another_config_is_freed_before_a_new_one_is_built(
    pairs: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's baseline (the base stage's config) gives its network back, and the first
    trial's merged folder (mergekit's config) cannot take it: it must not stay in memory while
    the trial's network is built (twice the memory of a 7B model)."""
    import gc
    import weakref

    from lm_eval.models.huggingface import HFLM

    from medrelease.gate.kept_network import NETWORKS
    from medrelease.gate.runner import make_lm

    NETWORKS.clear()
    dtype = {"dtype": "float32"}
    first = make_lm("hf", pairs["llama"][0], {}, 2, "cpu", dtype, keep_network=True)
    old = weakref.ref(first.model)
    first.give_back_network()
    del first
    gc.collect()
    assert old() is not None  # kept

    alive_while_building: list[bool] = []
    build = HFLM._create_model

    def watched(self: Any, *args: Any, **kwargs: Any) -> None:
        gc.collect()
        alive_while_building.append(old() is not None)
        build(self, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_create_model", watched)
    other = make_lm("hf", pairs["qwen3-tied-bf16"][0], {}, 2, "cpu", dtype, keep_network=True)
    assert not other.network_reused
    assert alive_while_building == [False]
    NETWORKS.clear()
