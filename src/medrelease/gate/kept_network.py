"""A model's network kept between evaluations of folders that differ only in their weights.

A sweep evaluates one merged folder per trial, and every trial's folder has the same config:
only the weights differ. transformers' `from_pretrained` builds the network anew each time
(0.45-0.8 s of a 33 s SmolLM2 trial on a 2-core CPU: constructing the modules, planning the key
conversions, casting). Here the network built for one folder is kept, and the next folder's
safetensors are copied into its parameters: `copy_` casts each stored tensor to the
parameter's dtype as `from_pretrained`'s load does, so the values are the ones a fresh load
gives (tested: bit-identical logits, tests/gate/test_kept_network.py).

Used only where that holds, and anything else loads as before:

* the same config files (config.json, generation_config.json, custom code) and the same model
  arguments, device and dtype: `network_key`;
* model arguments that cannot change the network's structure (no PEFT, delta, quantization,
  device maps): `REUSABLE_ARGS`; no `quantization_config` in the config;
* safetensors files whose tensor names are the network's own state-dict names with the same
  shapes (no key conversion), every parameter and persistent buffer loaded exactly once (a
  tied parameter through one of its names), each one its own plain storage:
  `load_weights_into`.

A kept network is taken by one evaluator at a time (`KeptNetworks.take` removes it), so two
models never share weights. One network is kept per process, and on the CPU only up to a quarter
of the machine's memory (it stays in memory through the next trial's merge); a model that
cannot take it frees it before building its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from medrelease.core.safetensors_header import weight_files

# lm-eval hf model_args that leave the network as the config builds it (others: no reuse)
REUSABLE_ARGS = frozenset(
    {
        "dtype",
        "trust_remote_code",
        "attn_implementation",
        "max_length",
        "truncation",
        "add_bos_token",
        "prefix_token_id",
        "logits_cache",
        "softmax_dtype",
        "mixed_precision_dtype",
        "use_fast_tokenizer",
        "max_batch_size",
        "think_end_token",
        "enable_thinking",
        "chat_template_args",
    }
)
# the files that decide how the network is built (the weights aside)
_NETWORK_FILES = ("config.json", "generation_config.json")


def network_key(
    folder: Path, model_args: dict[str, Any], dtype: dict[str, Any] | None, device: str
) -> str | None:
    """What two folders' networks must share for one to take the other's weights; None where
    this folder's network is not to be kept (see the module's conditions)."""
    if not folder.is_dir() or not set(model_args) <= REUSABLE_ARGS:
        return None
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        if "quantization_config" in json.loads(config.read_text(encoding="utf-8")):
            return None
    except (OSError, ValueError):
        return None
    if not _safetensors(folder):
        return None
    h = hashlib.sha256(repr((sorted(model_args.items()), dtype, device)).encode())
    for path in [folder / n for n in _NETWORK_FILES] + sorted(folder.glob("*.py")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _safetensors(folder: Path) -> list[Path]:
    """The weight files transformers would read, where all are safetensors and present; []
    otherwise (such a folder is loaded the usual way)."""
    try:
        files = weight_files(folder)
    except (OSError, ValueError, AttributeError):  # an unreadable index
        return []
    return files if files and all(f.is_file() for f in files) else []


def load_weights_into(network: Any, folder: Path) -> bool:
    """Copy `folder`'s weights into `network`; False, with `network` unchanged, where the
    files do not map one to one onto its parameters and persistent buffers."""
    import torch
    from safetensors import safe_open

    files = _safetensors(folder)
    if not files:
        return False
    own = network.state_dict(keep_vars=True)  # name -> the tensor itself (tied: two names)
    plan: dict[Path, list[tuple[str, Any]]] = {}  # file -> (tensor name, its target)
    loaded: set[int] = set()
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                target = own.get(name)
                if target is None or id(target) in loaded or not _own_storage(target):
                    return False  # a converted name, two tensors for one tied parameter, a view
                if tuple(f.get_slice(name).get_shape()) != tuple(target.shape):
                    return False
                loaded.add(id(target))
                plan.setdefault(path, []).append((name, target))
    if {id(t) for t in own.values()} != loaded:
        return False  # something the files do not set would keep the last folder's values
    with torch.no_grad():
        for path, targets in plan.items():
            with safe_open(str(path), framework="pt") as f:
                for name, target in targets:
                    target.copy_(f.get_tensor(name))
    network.config._name_or_path = str(folder)  # what lm-eval and the records name it by
    network.name_or_path = str(folder)
    return True


def _own_storage(t: Any) -> bool:
    """A contiguous tensor alone in its storage (not a view into a shared or mapped buffer)."""
    return bool(t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size())


def cpu_bytes(network: Any) -> int:
    """Bytes of the network's parameters and buffers held in the machine's memory (not a
    GPU's)."""
    # torch's parameters() and buffers() list a tied tensor once
    tensors = [*getattr(network, "parameters", list)(), *getattr(network, "buffers", list)()]
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cpu")


def memory_share_limit() -> int:
    """A quarter of the machine's memory: a kept network on the CPU stays in memory through the
    next trial's merge (mergekit's inputs, output shard and working tensors), so a larger one
    is freed instead (a 7B float32 network on a 24 GiB machine is not kept)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return 0  # unknown: keep nothing in memory


class KeptNetworks:
    """The last few networks given back, by `network_key`; taking one removes it. A network
    over `limit_bytes` of the machine's memory is not kept (`memory_share_limit`)."""

    def __init__(self, size: int = 1, limit_bytes: int | None = None):
        self._kept: dict[str, Any] = {}
        self._size = size
        self._limit = memory_share_limit() if limit_bytes is None else limit_bytes
        self._lock = threading.Lock()

    def take(self, key: str | None) -> Any:
        if key is None:
            return None
        with self._lock:
            return self._kept.pop(key, None)

    def give_back(self, key: str | None, network: Any) -> None:
        if key is None or network is None or cpu_bytes(network) > self._limit:
            return
        with self._lock:
            self._kept.pop(key, None)
            self._kept[key] = network
            while len(self._kept) > self._size:
                self._kept.pop(next(iter(self._kept)))

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


NETWORKS = KeptNetworks()  # per process: a sweep's trials, local or on a Ray worker
