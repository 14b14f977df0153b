"""`medrelease merge`: stages -> preflight -> mergekit -> finalize -> verify -> merged/.

Library entry point: `merge_release(loaded_recipe, workdir=..., force=...)`.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medrelease.core.atomic import staging_dir
from medrelease.core.compute_dtype import mem_available
from medrelease.core.console import Reporter
from medrelease.core.disk import human_bytes
from medrelease.core.errors import EnvironmentProblem, InputError, MedreleaseError
from medrelease.core.hashing import HashCache, folder_records
from medrelease.core.heap import give_back_freed_memory, torch_huge_pages
from medrelease.core.inputs import Rerun
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.core.runner import StepRun, step_run
from medrelease.core.step import StepResult
from medrelease.merge import preflight
from medrelease.merge.ambiguity import check_auto_chat_template
from medrelease.merge.config_check import resolve_merge_config
from medrelease.merge.determinism import ordered_merge_configuration
from medrelease.merge.finalize import finalize_output
from medrelease.merge.follow import MergekitFollower
from medrelease.merge.inputs import INPUTS, needed_stages
from medrelease.merge.progress import mergekit_progress
from medrelease.merge.verify import (
    WeightsScan,
    raise_on_failure,
    verification_inputs,
    verify_model_folder,
)
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.recipe.merge_refs import merge_stage_names
from medrelease.recipe.schema import chat_template_text
from medrelease.recipe.stages import AdapterStage
from medrelease.records.manifest import MergeRecord
from medrelease.stages import checks as stage_checks
from medrelease.stages.folders import ensure_ready
from medrelease.stages.sources import ResolvedStage, locate_stage


@dataclass
class MergeResult(StepResult[MergeRecord]):
    merged: Path = Path()

    def summary(self) -> dict[str, Any]:
        return {
            "step": "merge",
            "status": "skipped" if self.skipped else "done",
            "merged": str(self.merged),
            "manifest": str(self.manifest),
            "method": self.record.get("method"),
            "seed": self.record.get("seed"),
            "stages": self.record.get("stages"),
            "verification": self.record.get("verification"),
            "duration_s": self.record.get("timings", {}).get("duration_s"),
            "warnings": self.warnings,
        }


def merge_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    force: bool = False,
    reporter: Reporter | None = None,
    rerun: Rerun | None = None,
) -> MergeResult:
    """`force`: replace an existing merged/ (a standalone merge refuses to, INPUTS.rerun);
    `rerun`: `release` passes Rerun.SKIP (it replaces the release's own stale merge)."""
    with step_run(INPUTS, loaded, workdir, reporter, force=force, rerun=rerun) as run:
        if run.skipped:
            return MergeResult(**vars(run.skipped), merged=run.paths.merged)
        with torch_huge_pages():  # before mergekit or torch allocate anything (core/heap.py)
            return _merge_locked(run)


def _merge_locked(run: StepRun) -> MergeResult:
    recipe = run.loaded.recipe
    warnings: list[str] = []

    # 1. locate every stage (metadata only) and preflight before any weights move
    names = needed_stages(run.loaded)
    stages: dict[str, ResolvedStage] = {}
    for name in names:
        stages[name] = locate_stage(run.loaded, name)
    facts = preflight_stages(run.loaded, stages, run.paths, warnings, run.reporter)
    run.timer.lap("preflight")

    # 2. fetch Hub weights, materialize adapters
    merge_paths: dict[str, str] = {}
    for name, stage in stages.items():  # `stages` is in dependency order (bases first)
        ensure_ready(
            run.loaded, stage, run.paths, hashes=run.hashes, reporter=run.reporter, seen=stages
        )
        merge_paths[name] = str(stage.path)
    check_auto_chat_template(run.loaded, {n: s.path for n, s in stages.items()})
    run.timer.lap("fetch")

    resolved = resolve_merge_config(recipe.merge, merge_paths)
    seed = recipe.seed

    # 3. every weight finite (NaN in one stage would poison the merge silently) and hashed,
    # in a thread while mergekit runs; judged after it. Inputs the page cache cannot hold until
    # mergekit reads them are read just behind it instead (merge/follow.py): read ahead, they
    # came from disk twice (7B, two stages on 24 GiB). Smaller ones are read ahead: following
    # wakes the scan for every tensor mergekit loads (SmolLM2-135M: mergekit 1.3 s, not 0.9).
    plain = {n: s for n, s in stages.items() if s.kind != "adapter" and n in facts}
    follower = MergekitFollower()
    follow = sum(facts[n].weight_bytes for n in plain) > mem_available() // 2
    input_checks = preflight.check_finite_and_hash(
        {n: (s, facts[n]) for n, s in plain.items()},
        run.hashes,
        pace=follower if follow else None,
    )
    run.timer.lap("check_finite")

    # 5. run mergekit into a staging folder, finalize, verify, then move into place
    # the scan is let go when mergekit ends, and on any way out before it
    with contextlib.closing(follower), staging_dir(run.paths.merged, replace=True) as tmp:
        try:
            with follower.following() if follow else contextlib.nullcontext():
                run_mergekit(resolved, tmp, seed=seed, reporter=run.reporter)
        except Exception:
            # a NaN stage can make mergekit fail too: the input's verdict is the better message
            preflight.wait_for_input_hashes(input_checks)
            raise
        run.timer.lap("merge")
        # 4. the inputs' verdicts (NaN/Inf) and digests, read while mergekit ran
        preflight.wait_for_input_hashes(input_checks)
        # mergekit's tensors and the scan's buffers, freed in two threads' heaps: given back
        # before the verification loads the merged model (else the step's peak RSS was one of
        # two values, 1.05x or 1.18x mergekit's on SmolLM2-135M, as the threads happened to run)
        give_back_freed_memory()
        run.timer.lap("check_finite_wait")
        stage_records = _stage_records(stages, facts, run.hashes)
        run.hashes.save()
        run.timer.lap("hash_inputs")
        applied, checks = _finalize_and_verify(run.loaded, stages, stage_records, tmp, run.hashes)
        raise_on_failure(checks)
        run.timer.lap("finalize_verify")
    run.hashes.moved(tmp, run.paths.merged)  # the scan's digests, now under merged/
    outputs = {f"merged/{k}": v for k, v in folder_records(run.paths.merged, run.hashes).items()}
    run.hashes.save()
    record: MergeRecord = {
        "status": "done",
        "method": recipe.merge.get("merge_method"),
        "seed": seed,
        "mergekit_config": recipe.merge,
        "stages": stage_records,
        "output_settings": applied,
        "verification": checks,
        "outputs": outputs,
        "warnings": warnings,
    }
    run.record(record, header=_header(run.loaded))  # components computed now: the hashes are warm
    return MergeResult(
        "merge", record, run.paths.manifest, warnings=warnings, merged=run.paths.merged
    )


def _header(loaded: LoadedRecipe) -> dict[str, Any]:
    """The manifest header the merge (which starts a release) writes: what, from which recipe."""
    return {
        "release": loaded.recipe.release.model_dump(mode="json"),
        "recipe": {
            "path": str(loaded.path),
            "sha256": loaded.sha256,
            "overrides": loaded.overrides,
            "changes": list(loaded.changes),
        },
    }


STAGE_CONFIG_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
)


def _stage_records(
    stages: dict[str, ResolvedStage],
    facts: dict[str, stage_checks.StageFacts],
    hashes: HashCache,
) -> dict[str, Any]:
    """What the manifest says of each stage: where from, every file's digest, its shape."""
    records: dict[str, Any] = {}
    for name, stage in stages.items():
        rec = stage.record()
        src = stage.adapter.path if stage.adapter is not None else stage.path
        rec["files"] = folder_records(src, hashes)
        if stage.adapter is not None:
            rec["materialized_files"] = folder_records(stage.path, hashes)
        rec["config"] = {k: facts[name].config.get(k) for k in STAGE_CONFIG_KEYS if name in facts}
        records[name] = rec
    return records


def _finalize_and_verify(
    loaded: LoadedRecipe,
    stages: dict[str, ResolvedStage],
    stage_records: dict[str, Any],
    tmp: Path,
    hashes: HashCache,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Output settings applied to mergekit's folder, then every check of the merged model:
    (the settings applied, the verification checks)."""
    recipe = loaded.recipe
    # hash + scan the new weights in the background while finalize and verify run
    weights_scan = WeightsScan(tmp, hashes)
    applied, references, eos_from = apply_output_settings(
        loaded, {n: s.path for n, s in stages.items()}, tmp
    )
    _write_portable_config(tmp, recipe.merge, stage_records)
    checks = verify_model_folder(
        tmp,
        weights_scan=weights_scan,
        references=references,
        merge=recipe.merge,
        eos_from=eos_from,
        stop_check=recipe.output.stop_check_settings(),
    )
    return applied, checks


def apply_output_settings(
    loaded: LoadedRecipe,
    folders: dict[str, Path],
    out: Path,
    *,
    finalize: Callable[..., dict[str, Any]] = finalize_output,
) -> tuple[dict[str, Any], dict[str, Path], dict[str, Path]]:
    """The recipe's output settings on mergekit's folder (tokenizer, chat template, generation
    config): (what was set, the verification's reference folders, the EOS sources). One
    definition for the release's merge and a sweep trial's (medrelease.merge.trial, whose
    `finalize` reuses what an earlier trial's `finalize_output` made of the same files)."""
    recipe = loaded.recipe
    base_stage = recipe.merge.get("base_model") or merge_stage_names(recipe.merge)[0]
    tok_from = recipe.output.tokenizer_from
    references, eos_from = verification_inputs(
        recipe.merge, recipe.output.generation_config, tok_from, folders
    )
    applied = finalize(
        out,
        chat_template=chat_template_text(recipe, loaded.base_dir),
        generation=recipe.output.generation_config,
        generation_base=folders.get(base_stage),
        tokenizer_source=folders[tok_from] if tok_from else None,
        eos_from=eos_from,
    )
    return applied, references, eos_from


def preflight_stages(
    loaded: LoadedRecipe,
    stages: dict[str, ResolvedStage],
    paths: ReleasePaths,
    warnings: list[str],
    reporter: Reporter,
) -> dict[str, stage_checks.StageFacts]:
    recipe = loaded.recipe
    facts: dict[str, stage_checks.StageFacts] = {}
    for name, stage in stages.items():
        if stage.kind == "adapter":
            stage_checks.check_adapter(stage)
            continue
        f = stage_checks.check_weights(stage)
        f.config = stage_checks.read_config(stage)
        facts[name] = f
        stage_checks.check_tokenizer_fits(stage, f)
        if f.pickle:
            warnings.append(f"stage {name!r} uses pickle weights (allowed by the recipe)")
    for name, stage in stages.items():  # adapters inherit their base's architecture
        if stage.kind == "adapter" and stage.base in facts:
            facts[name] = facts[stage.base]

    merge = recipe.merge
    used = merge_stage_names(merge)
    tok_keys = merge.get("tokenizer_source") is not None or merge.get("tokenizer") is not None
    preflight.check_compatible(
        str(merge.get("merge_method")),
        bool(merge.get("slices") or merge.get("modules")),
        {n: facts[n] for n in used if n in facts},
        allow_vocab_change=tok_keys,
    )
    tok_stage = recipe.output.tokenizer_from or merge.get("base_model") or used[0]
    if tok_stage in facts and not facts[tok_stage].has_tokenizer:
        spec = recipe.stages[tok_stage]
        if not isinstance(spec, AdapterStage):
            raise InputError(
                f"stage {tok_stage!r}: no tokenizer files (tokenizer.json / tokenizer.model)",
                hint="save the tokenizer with the checkpoint, or set output.tokenizer_from "
                "to a stage that has one",
            )
    biggest = max((facts[n].weight_bytes for n in used if n in facts), default=0)
    dtype_scale = _dtype_scale(merge, facts[used[0]].config if used[0] in facts else {})
    needed = int(biggest * dtype_scale * 1.1) + sum(
        facts[n].weight_bytes for n, s in stages.items() if s.kind == "hub" and not s.weights_ready
    )
    adapters = [n for n, s in stages.items() if s.kind == "adapter"]
    needed += sum(facts[n].weight_bytes for n in adapters if n in facts)
    preflight.check_disk(paths.root, needed)
    reporter.info(
        f"preflight ok: {len(stages)} stage(s), method {merge.get('merge_method')}, "
        f"~{human_bytes(needed)} to write"
    )
    return facts


DTYPE_WIDTH = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def _dtype_scale(merge: dict[str, Any], cfg: dict[str, Any]) -> float:
    src = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32").replace("torch.", "")
    out = str(merge.get("out_dtype") or merge.get("dtype") or src)
    return DTYPE_WIDTH.get(out, 4) / DTYPE_WIDTH.get(src, 4)


def run_mergekit(config: dict[str, Any], out: Path, *, seed: int, reporter: Reporter) -> None:
    """Run mergekit's library API exactly as `mergekit-yaml CONFIG OUT --random-seed SEED`."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    options = MergeOptions(random_seed=seed, copy_tokenizer=True, quiet=False)
    options.apply_global_options()
    cfg = ordered_merge_configuration(config)  # no choice left to set order (hash seed)
    source = yaml.safe_dump(config, sort_keys=False)
    try:
        with mergekit_progress(reporter):
            run_merge(cfg, str(out), options=options, config_source=source)
    except MedreleaseError:
        raise
    except Exception as exc:
        if _disk_full(exc):
            raise EnvironmentProblem(
                "the disk filled up while mergekit wrote the merged model "
                "(No space left on device)",
                hint="free disk space or pass --workdir on a larger disk (nothing was kept)",
            ) from exc
        if not isinstance(exc, (RuntimeError, ValueError, KeyError, OSError)):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"mergekit failed: {first}",
            hint="re-run with --debug for mergekit's traceback",
        ) from exc


def _disk_full(exc: BaseException) -> bool:
    # safetensors reports ENOSPC as its own SafetensorError, with the OS message inside
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def _write_portable_config(out: Path, merge: dict[str, Any], stages: dict[str, Any]) -> None:
    """Replace mergekit_config.yml (local temp paths) with one naming the published sources."""
    portable: dict[str, str] = {}
    for name, rec in stages.items():
        if rec["kind"] == "hub":
            portable[name] = (
                f"{rec['source']}@{rec['revision']}" if rec.get("revision") else rec["source"]
            )
        else:
            portable[name] = name
    text = (
        "# mergekit configuration of this release; model names are the recipe's stages\n"
        "# (Hub stages carry their exact commit).\n"
        + yaml.safe_dump(resolve_merge_config(merge, portable), sort_keys=False)
    )
    (out / "mergekit_config.yml").write_text(text)
