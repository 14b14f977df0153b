"""Float32 compute with half-precision weights in memory: each module is upcast as it runs.

A 7B bf16 model is 15 GB as loaded and 30 GB as a float32 copy, which a 24 GiB machine cannot
hold; computing in bf16 instead is 2.7x slower on a CPU without bf16 matrix hardware (see
core/compute_dtype.py). So the weights stay in their own dtype and a pair of hooks on every
module that owns parameters swaps in float32 copies for the duration of that module's call
and puts the originals back afterwards. At most one module's float32 copy exists at a time
(the largest is usually the LM head: vocab x hidden x 4 bytes).

The numbers are those of a float32 model: bf16 -> float32 is exact, and the same float32
kernels run on the same values. Works for any architecture (nothing here knows layer names);
tied weights are fine because only one module runs at a time.

`streamed_from_disk` goes further for a check that only reads the model (the quant checks'
reference): the weights are not even loaded; each module reads its tensors from the
safetensors files as it runs. Memory is then one module, not the model, and not even one
module for the two largest: the embedding upcasts only the rows it looks up, and the LM head
reads and upcasts `BLOCK_ROWS` of its rows at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def upcast_per_module(model: Any, dtype: Any = None) -> Any:
    """Make `model` compute in `dtype` (float32) while storing its own. Returns the model.
    Idempotent: a module already hooked for `dtype` is left as it is.

    Inputs to the first module are token ids, so activations become float32 from the
    embedding on and stay so; buffers (rotary frequencies) are float32 in transformers."""
    import torch

    target = torch.float32 if dtype is None else dtype
    for module in model.modules():
        params = [p for p in module.parameters(recurse=False) if p.is_floating_point()]
        hooked = getattr(module, "_medrelease_upcast_to", None) == target
        if params and not hooked and any(p.dtype != target for p in params):
            _hook(module, target)
            module._medrelease_upcast_to = target  # a second call (a kept network) adds none
    return model


def _hook(module: Any, target: Any) -> None:
    saved: list[tuple[Any, Any]] = []

    def before(mod: Any, args: Any) -> None:
        for p in mod.parameters(recurse=False):
            if p.is_floating_point() and p.dtype != target:
                saved.append((p, p.data))
                p.data = p.data.to(target)

    def after(mod: Any, args: Any, output: Any) -> None:
        while saved:
            p, original = saved.pop()
            p.data = original

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def streamed_from_disk(folder: Path, dtype: Any = None) -> Any | None:
    """A transformers model of `folder` whose weights stay on disk: each module reads its own
    tensors from the safetensors files when it runs (as `dtype`, float32 by default) and drops
    them afterwards. Memory is one module's weights (a block of the LM head's, at most) plus
    activations, whatever the model's size; each forward pass reads the weights once (from
    the page cache when they fit). Returns None where a parameter cannot be found in the files (an
    architecture whose checkpoint names differ from its modules'): load it normally then."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    target = torch.float32 if dtype is None else dtype
    index = _tensor_files(folder)
    if not index:
        return None
    config = AutoConfig.from_pretrained(str(folder))
    with init_empty_weights(include_buffers=False):  # parameters on "meta", buffers real
        model = AutoModelForCausalLM.from_config(config, dtype=target)
    model.eval()
    tied = _tied_sources(model, config, index)
    plan: list[tuple[Any, dict[str, tuple[Path, str]]]] = []
    for prefix, module in model.named_modules():
        own: dict[str, tuple[Path, str]] = {}
        for pname, _ in module.named_parameters(recurse=False):
            full = f"{prefix}.{pname}" if prefix else pname
            source = full if full in index else tied.get(full)
            if source is None:
                return None
            own[pname] = (index[source], source)
        if own:
            plan.append((module, own))
    for module, own in plan:
        _stream(module, own, target)
    return model


def _tensor_files(folder: Path) -> dict[str, Path]:
    """tensor name -> the safetensors file holding it (headers only)."""
    from medrelease.core.safetensors_header import safetensors_headers

    out: dict[str, Path] = {}
    for f, header in safetensors_headers(folder).items():
        out.update({name: f for name in header if name != "__metadata__"})
    return out


def _tied_sources(model: Any, config: Any, index: dict[str, Path]) -> dict[str, str]:
    """Tied parameters absent from the files (the LM head of a tied-embedding model) -> the
    name they are stored under."""
    if not getattr(config, "tie_word_embeddings", False):
        return {}
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if emb is None or head is None:
        return {}
    names = {id(m): n for n, m in model.named_modules()}
    emb_name, head_name = f"{names[id(emb)]}.weight", f"{names[id(head)]}.weight"
    return {head_name: emb_name} if emb_name in index else {}


# An embedding or a linear layer (the LM head) with at least this many rows is never upcast
# whole: its float32 copy would be the step's memory peak (vocab x hidden x 4 bytes: 113 MB
# for SmolLM2's 49k vocabulary, 2.2 GB for Qwen's 152k at 7B shape), beside the logits.
BLOCK_ROWS = 8192


def _stream(module: Any, own: dict[str, tuple[Path, str]], target: Any) -> None:
    import torch

    rows = getattr(module, "num_embeddings", None) or getattr(module, "out_features", None)
    large = isinstance(rows, int) and rows >= BLOCK_ROWS
    # (an embedding's max_norm rewrites the weights as it looks them up: streamed whole)
    if large and type(module) is torch.nn.Embedding and module.max_norm is None:
        module.forward = _embedding_rows(own["weight"], target)  # type: ignore[method-assign]
    elif large and type(module) is torch.nn.Linear:
        module.forward = _linear_in_blocks(own, target)  # type: ignore[method-assign]
    else:
        _stream_whole(module, own, target)


def _stream_whole(module: Any, own: dict[str, tuple[Path, str]], target: Any) -> None:
    """Hooks: the module's tensors read (as `target`) before it runs, dropped after."""
    import torch
    from safetensors import safe_open

    placeholders = {name: module._parameters[name] for name in own}

    def before(mod: Any, args: Any) -> None:
        for name, (file, key) in own.items():
            with safe_open(str(file), framework="pt") as fh:
                value = fh.get_tensor(key).to(target)
            mod._parameters[name] = torch.nn.Parameter(value, requires_grad=False)

    def after(mod: Any, args: Any, output: Any) -> None:
        for name, meta in placeholders.items():
            mod._parameters[name] = meta

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def _embedding_rows(weight: tuple[Path, str], target: Any) -> Any:
    """An embedding's forward that upcasts only the rows it looks up (the conversion to
    float32 is exact, so these are the rows of the float32 table)."""
    from safetensors import safe_open

    file, key = weight

    def forward(ids: Any) -> Any:
        with safe_open(str(file), framework="pt") as fh:
            table = fh.get_tensor(key)
        return table[ids].to(target)

    return forward


def _linear_in_blocks(own: dict[str, tuple[Path, str]], target: Any) -> Any:
    """A linear layer's forward that reads and upcasts BLOCK_ROWS output rows at a time."""
    import torch
    from safetensors import safe_open

    file, key = own["weight"]

    def forward(x: Any) -> Any:
        with safe_open(str(file), framework="pt") as fh:
            weight = fh.get_slice(key)
            rows = int(weight.get_shape()[0])
            bias = None
            if "bias" in own:
                with safe_open(str(own["bias"][0]), framework="pt") as bh:
                    bias = bh.get_tensor(own["bias"][1]).to(target)
            out = torch.empty((*x.shape[:-1], rows), dtype=target, device=x.device)
            for start in range(0, rows, BLOCK_ROWS):
                block = weight[start : start + BLOCK_ROWS].to(target)
                part = None if bias is None else bias[start : start + BLOCK_ROWS]
                out[..., start : start + block.shape[0]] = torch.nn.functional.linear(
                    x, block, part
                )
        return out

    return forward
