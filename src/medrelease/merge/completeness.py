"""Merged model completeness: the output holds every tensor it must, and nothing else.

transformers loads a checkpoint that lacks tensors by initialising them at random (it only
logs them as MISSING), so "it loads and its logits are finite" passes a model with holes.
mergekit can leave holes: an architecture definition that does not list some tensors
(arcee-ai/mergekit PR #696), `slices:` that skip layers, a model type it only half knows.

Two passes, both cheap:

* `header_problems` reads the safetensors headers only (names, dtypes, shapes; no tensor
  data) and compares them with the stage(s) the merge started from: same tensor names, same
  shapes (rows of the vocabulary may change when the merge builds a tokenizer), the dtype the
  merge asked for, and `lm_head.weight` present exactly when the config unties it.
* `loading_problems` reads transformers' own loading report (`output_loading_info=True`) of
  the load verification does anyway: missing, unexpected and mismatched keys.

Each problem names the tensors and the likely cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, TypeGuard

from medrelease.core.errors import VerificationError
from medrelease.core.manifest import Json
from medrelease.core.safetensors_header import weight_files
from medrelease.stages.safetensors_check import read_header

# `dtype:` / `out_dtype:` of a mergekit config -> safetensors dtype tag
SAFETENSORS_DTYPE = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "fp32": "F32",
    "fp16": "F16",
    "bf16": "BF16",
}
FLOAT_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "F8_E4M3": 8, "F8_E5M2": 8}
FLOAT_TAGS = set(FLOAT_BITS)
SHOW = 8  # tensor names listed in one message; the rest are counted


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def tensor_table(folder: Path) -> dict[str, TensorInfo]:
    """name -> dtype and shape, from the headers alone (a few KiB read per file)."""
    table: dict[str, TensorInfo] = {}
    for path in weight_files(folder):
        header, _ = read_header(path)
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            table[name] = TensorInfo(
                str(info.get("dtype")),
                tuple(int(d) for d in info.get("shape", [])),  # type: ignore[attr-defined]
            )
    return table


class ModelConfig(TypedDict, total=False):
    """The config.json fields this module reads (a multimodal config's text model's). The file's
    other fields stay in the mapping: mergekit's architecture lookup builds a config from all
    of them. None where the file says null (each reader then falls back, as for an absent key)."""

    architectures: list[str] | None
    model_type: str | None
    num_hidden_layers: int | None
    vocab_size: int | None
    tie_word_embeddings: bool | None  # absent means tied (transformers' default)


def _is_int(value: Json) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# each field ModelConfig declares -> the test its non-null value must pass
_FIELD_TESTS: dict[str, Callable[[Json], bool]] = {
    "architectures": lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
    "model_type": lambda v: isinstance(v, str),
    "num_hidden_layers": _is_int,
    "vocab_size": _is_int,
    "tie_word_embeddings": lambda v: isinstance(v, bool),
}


def _wrong_fields(fields: Mapping[str, Json]) -> list[str]:
    return [
        f"{key}: {json.dumps(fields[key])}"
        for key, fits in _FIELD_TESTS.items()
        if fields.get(key) is not None and not fits(fields[key])
    ]


def _is_model_config(fields: Mapping[str, Json]) -> TypeGuard[ModelConfig]:
    return not _wrong_fields(fields)


def text_config(cfg: Mapping[str, Json]) -> dict[str, Json]:
    """A multimodal config's text model's fields over the outer ones (vocabulary, depth)."""
    inner = cfg.get("text_config")
    return {**cfg, **inner} if isinstance(inner, dict) else dict(cfg)


def read_config(folder: Path) -> ModelConfig:
    """config.json of a model folder, its fields this module reads checked for their types."""
    path = folder / "config.json"
    raw: Json = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise VerificationError(
            "config.json is not a JSON object",
            where=str(path),
            hint="a model's config.json is a mapping of its settings; rewrite it from a stage",
        )
    fields = text_config(raw)
    if not _is_model_config(fields):
        raise VerificationError(
            f"config.json has value(s) of the wrong type: {'; '.join(_wrong_fields(fields))}",
            where=str(path),
            hint="architectures is a list of class names, model_type a string, "
            "num_hidden_layers and vocab_size integers, tie_word_embeddings true or false; "
            "fix the file (or the stage it came from)",
        )
    return fields


def list_names(names: list[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:SHOW])
    return shown + (f" (and {len(names) - SHOW} more)" if len(names) > SHOW else "")


class LoadingInfo(TypedDict, total=False):
    """transformers' loading report (`output_loading_info=True`): sets in transformers 5, lists
    before; a mismatched key is (name, shape in the files, shape the config gives)."""

    missing_keys: Collection[str]
    unexpected_keys: Collection[str]
    mismatched_keys: Collection[str | tuple[object, ...]]
    error_msgs: list[str]


@dataclass
class Problem:
    """One completeness failure: what (naming tensors) and the likely cause."""

    detail: str
    cause: str
    names: frozenset[str] = frozenset()  # the tensors it is about (so none is told twice)
    warning: bool = False  # reported in the check's detail, not a failure


def likely_cause(cfg: ModelConfig, merge: Mapping[str, Json]) -> str:
    """Why mergekit's output can miss tensors, most specific first."""
    arch = ", ".join(cfg.get("architectures") or []) or str(cfg.get("model_type"))
    if merge.get("slices") or merge.get("modules"):
        return (
            "likely cause: the merge's `slices:`/`modules:` do not cover every layer the "
            f"config declares (num_hidden_layers={cfg.get('num_hidden_layers')})"
        )
    known = _mergekit_knows(cfg)
    if known is False:
        return (
            f"likely cause: an unsupported model type: mergekit has no architecture definition "
            f"for {arch} (model_type {cfg.get('model_type')!r}) and guessed one from tensor names"
        )
    return (
        f"likely cause: mergekit's architecture definition for {arch} does not list these "
        "tensors (update mergekit, or report the architecture upstream)"
    )


def _mergekit_knows(cfg: ModelConfig) -> bool | None:
    try:
        from mergekit.architecture import arch_info_for_config
        from transformers import PretrainedConfig

        # every field of config.json, not only ModelConfig's (from_dict: the constructor's **)
        return arch_info_for_config(PretrainedConfig.from_dict(dict(cfg))) is not None
    except Exception:  # mergekit absent or the config too unusual: say nothing specific
        return None


def header_problems(
    merged: Path,
    references: dict[str, Path],
    merge: Mapping[str, Json],
) -> list[Problem]:
    """Compare the merged files' headers with each reference stage and with the config:
    tensor names and shapes, then dtypes, then the tied/untied output layer."""
    cfg = read_config(merged)
    table = tensor_table(merged)
    if not table:
        return [Problem("no tensors in the merged safetensors files", likely_cause(cfg, merge))]
    ref_tables = {stage: tensor_table(folder) for stage, folder in references.items()}
    problems = _stage_problems(cfg, table, references, ref_tables, merge)
    problems += _dtype_problems(table, ref_tables, merge)
    ref_tied = {stage: _tied(read_config(folder)) for stage, folder in references.items()}
    problems += _tie_problems(cfg, table, ref_tables, ref_tied)
    return problems


def _stage_problems(
    cfg: ModelConfig,
    table: dict[str, TensorInfo],
    references: dict[str, Path],
    ref_tables: dict[str, dict[str, TensorInfo]],
    merge: Mapping[str, Json],
) -> list[Problem]:
    """Names and shapes against the first stage that differs: one stage's differences are
    enough to read, the others repeat them."""
    for stage, folder in references.items():
        ref = ref_tables[stage]
        if not ref:
            continue  # pickle weights (allow_pickle): no header to read; transformers' report
        ref_cfg = read_config(folder)
        if ref_cfg.get("num_hidden_layers") != cfg.get("num_hidden_layers"):
            continue  # a merge that changes depth (slices): transformers' report covers it
        found = _against_stage(stage, table, ref, cfg, ref_cfg, merge)
        if found:
            return found
    return []


def _against_stage(
    stage: str,
    table: dict[str, TensorInfo],
    ref: dict[str, TensorInfo],
    cfg: ModelConfig,
    ref_cfg: ModelConfig,
    merge: Mapping[str, Json],
) -> list[Problem]:
    """Tensors missing, extra, or reshaped against one stage (vocabulary rows may differ)."""
    problems: list[Problem] = []
    missing = [n for n in ref if n not in table]
    extra = [n for n in table if n not in ref]
    if missing:
        problems.append(
            Problem(
                f"{len(missing)} tensor(s) of stage {stage!r} missing from the merged "
                f"model: {list_names(missing)}",
                likely_cause(cfg, merge),
                frozenset(missing),
            )
        )
    if extra:
        problems.append(
            Problem(
                f"{len(extra)} tensor(s) in the merged model that stage {stage!r} does "
                f"not have: {list_names(extra)}",
                "likely cause: mergekit's architecture definition maps tensors this model "
                "does not have, or the output mixes architectures",
                frozenset(extra),
            )
        )
    vocab, ref_vocab = int(cfg.get("vocab_size") or 0), int(ref_cfg.get("vocab_size") or 0)
    reshaped = [
        f"{n} {list(table[n].shape)} (stage: {list(ref[n].shape)})"
        for n in ref
        if n in table
        and table[n].shape != ref[n].shape
        and not _vocab_resize(table[n].shape, ref[n].shape, vocab, ref_vocab)
    ]
    if reshaped:
        problems.append(
            Problem(
                f"{len(reshaped)} tensor(s) with another shape than in stage {stage!r}: "
                f"{list_names(reshaped)}",
                likely_cause(cfg, merge),
            )
        )
    return problems


def _dtype_problems(
    table: dict[str, TensorInfo],
    ref_tables: dict[str, dict[str, TensorInfo]],
    merge: Mapping[str, Json],
) -> list[Problem]:
    """Each float tensor in the dtype the merge asked for (else its stage's): narrower loses
    precision (a failure), wider is lossless but larger, e.g. arcee_fusion's float32 mask
    (a warning)."""
    want = _wanted_dtype(merge)
    narrower: list[str] = []
    wider: list[str] = []
    for n, info in table.items():
        expected = want or _ref_dtype(n, ref_tables)
        if info.dtype not in FLOAT_TAGS or expected is None or info.dtype == expected:
            continue
        text = f"{n} ({info.dtype}" + (f", stage: {expected})" if not want else ")")
        lossless = FLOAT_BITS.get(info.dtype, 0) > FLOAT_BITS.get(expected, 99) and not (
            expected == "BF16" and info.dtype == "F16"
        )
        (wider if lossless else narrower).append(text)
    problems: list[Problem] = []
    if narrower:
        problems.append(
            Problem(
                f"{len(narrower)} tensor(s) not in the expected dtype "
                f"{want or 'of the stage'}: {list_names(narrower)}",
                "likely cause: mergekit kept an input dtype; set `dtype:` (or `out_dtype:`) in "
                "merge:",
                frozenset(),
            )
        )
    if wider:
        problems.append(
            Problem(
                f"{len(wider)} tensor(s) stored wider than the expected dtype "
                f"{want or 'of the stage'} (lossless, larger files): {list_names(wider)}",
                "mergekit's method computed in a wider type; set `out_dtype:` in merge: to "
                "store the intended one",
                frozenset(),
                warning=True,
            )
        )
    return problems


def _vocab_resize(
    merged: tuple[int, ...], ref: tuple[int, ...], vocab: int, ref_vocab: int
) -> bool:
    """Rows of the vocabulary change when the merge builds a tokenizer (union, added tokens)."""
    if len(merged) != len(ref) or not vocab or not ref_vocab:
        return False
    diff = [i for i, (a, b) in enumerate(zip(merged, ref, strict=True)) if a != b]
    return len(diff) == 1 and merged[diff[0]] == vocab and ref[diff[0]] == ref_vocab


def _wanted_dtype(merge: Mapping[str, Json]) -> str | None:
    name = merge.get("out_dtype") or merge.get("dtype")
    return SAFETENSORS_DTYPE.get(str(name)) if name else None


def _ref_dtype(name: str, ref_tables: dict[str, dict[str, TensorInfo]]) -> str | None:
    for ref in ref_tables.values():
        info = ref.get(name)
        if info is not None:
            return info.dtype
    return None


def output_embedding_names(names: list[str] | set[str]) -> list[str]:
    return sorted(n for n in names if n == "lm_head.weight" or n.endswith(".lm_head.weight"))


def _tie_problems(
    cfg: ModelConfig,
    table: dict[str, TensorInfo],
    ref_tables: dict[str, dict[str, TensorInfo]],
    ref_tied: dict[str, bool],
) -> list[Problem]:
    """config.json's tie_word_embeddings against the presence of lm_head.weight."""
    tied = _tied(cfg)
    heads = output_embedding_names(set(table))
    if not tied and not heads:
        return [
            Problem(
                "config.json unties the embeddings (tie_word_embeddings: false) but the "
                "merged model has no lm_head.weight: transformers would initialise the output "
                "layer at random",
                "likely cause: mergekit's architecture definition treats lm_head as tied for "
                "this model, or config.json came from a stage that unties it; make the "
                "stages agree",
                frozenset({"lm_head.weight"}),
            )
        ]
    # a stage that also ties and still stores lm_head (some checkpoints do) makes it harmless
    same_as_input = any(
        ref_tied[s] and output_embedding_names(set(t)) for s, t in ref_tables.items()
    )
    if tied and heads and not same_as_input:
        return [
            Problem(
                "config.json ties the embeddings (tie_word_embeddings: true) but the merged "
                f"model stores {', '.join(heads)}, which transformers replaces by the input "
                "embeddings: the merged output layer would be thrown away",
                "likely cause: config.json came from a stage that ties the embeddings and the "
                "tensors from stages that do not; make the stages agree",
                frozenset(heads),
            )
        ]
    return []


def _tied(cfg: ModelConfig) -> bool:
    # transformers' default (PretrainedConfig) is tied, so an absent key means tied
    return bool(cfg.get("tie_word_embeddings", True))


def loading_problems(
    info: LoadingInfo,
    cfg: ModelConfig,
    merge: Mapping[str, Json],
    already: Sequence[Problem] = (),
) -> list[Problem]:
    """transformers' loading report: keys it had to invent, ignore, or could not fit
    (tensors a header problem already named are not repeated)."""
    told = set().union(*(p.names for p in already)) if already else set()
    problems: list[Problem] = []
    missing = sorted(str(k) for k in info.get("missing_keys") or [] if str(k) not in told)
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or [] if str(k) not in told)
    mismatched = sorted(
        str(k[0] if isinstance(k, tuple) else k)
        for k in info.get("mismatched_keys") or []
        if str(k[0] if isinstance(k, tuple) else k) not in told
    )
    if missing:
        problems.append(
            Problem(
                f"transformers reports {len(missing)} MISSING tensor(s) (it would initialise "
                f"them at random): {list_names(missing)}",
                likely_cause(cfg, merge),
            )
        )
    if unexpected:
        problems.append(
            Problem(
                f"transformers reports {len(unexpected)} UNEXPECTED tensor(s) (it ignores "
                f"them): {list_names(unexpected)}",
                "likely cause: tensors of another architecture or naming scheme in the output",
            )
        )
    if mismatched:
        problems.append(
            Problem(
                f"transformers reports {len(mismatched)} tensor(s) with a shape the config "
                f"does not give: {list_names(mismatched)}",
                likely_cause(cfg, merge),
            )
        )
    return problems
