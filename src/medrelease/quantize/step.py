"""`medrelease quantize`: merged/ -> quant/gguf (llama.cpp) and quant/awq (llm-compressor).

Every quant is checked against the merged model (tokenization, logits on held-out text)
before it is accepted. Accepted quants land in quant/gguf/ and quant/awq/ (what `publish`
uploads); rejected ones are kept for inspection under quant/rejected/, never published. A
rejected required quant stops the step with exit 5 after it is recorded (quantize/verdict.py).
Library entry point: `quantize_release(loaded_recipe, workdir=..., reporter=...)`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from medrelease.checks.stops import release_eos_ids
from medrelease.core.atomic import TMP_PREFIX, staging_dir
from medrelease.core.console import Reporter
from medrelease.core.errors import InputError, RecipeError, UsageError
from medrelease.core.hashing import HashCache, digest_of, file_record, folder_records
from medrelease.core.inputs import Rerun
from medrelease.core.paths import DEFAULT_WORKDIR, ReleasePaths
from medrelease.core.runner import StepRun, step_run
from medrelease.core.step import StepResult
from medrelease.executors import Executor, Unit, make_executor, resolve_executor_name
from medrelease.quantize.base import EvalPlan, QuantArtifact, QuantContext
from medrelease.quantize.config import QuantizeConfig
from medrelease.quantize.gguf.imatrix import Imatrix
from medrelease.quantize.inputs import INPUTS
from medrelease.quantize.texts import TextSource, load_text
from medrelease.quantize.verdict import QuantRejected, enforce, rejection, required_rejected
from medrelease.recipe.loaded import LoadedRecipe
from medrelease.records.gate_report import read_gate_report
from medrelease.records.manifest import Files
from medrelease.records.quantize import QuantEntry, QuantizeRecord

FAMILIES = ("gguf", "awq")


def _config(loaded: LoadedRecipe) -> QuantizeConfig:
    cfg = loaded.recipe.quantize
    if cfg is None or (cfg.gguf is None and cfg.awq is None):
        raise UsageError(
            f"{loaded.path} has no quantize: section with gguf: or awq:",
            hint="add e.g. `quantize: {gguf: {types: [Q8_0, Q4_K_M]}}` to the recipe",
        )
    return cfg


def _check_imatrix(cfg: QuantizeConfig) -> None:
    """Before any work: imatrix-only types need `gguf.imatrix`, which needs the built tools."""
    if cfg.gguf is None:
        return
    from medrelease.quantize.gguf.quant_types import gguf_type
    from medrelease.quantize.gguf.tools import TOOLS, tool_path

    needs = [t for t in cfg.gguf.types if gguf_type(t).imatrix]
    if needs and cfg.gguf.imatrix is None:
        raise RecipeError(
            f"types {needs} need an importance matrix",
            where="quantize.gguf",
            hint="add `imatrix: {calibration: default}` (or a recipe-relative text file) "
            "to quantize.gguf, or use types that need none (Q8_0, Q6_K, Q4_K_M, IQ4_XS, ...)",
        )
    if cfg.gguf.imatrix is not None:
        for name in TOOLS:  # raises "run `medrelease setup`" when a tool is missing
            tool_path(name)


def quantize_release(
    loaded: LoadedRecipe,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    reporter: Reporter | None = None,
    force: bool = False,
    threads: int | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    rerun: Rerun | None = None,
) -> StepResult[QuantizeRecord]:
    """`executor`: where the quant units run, `local` | `ray` (default: the recipe's
    `quantize.executor`, else local); `ray_address`: the Ray cluster (default: $RAY_ADDRESS,
    else a local Ray instance). Quantization happens once per type whichever runs it."""
    # quiet_libraries() (1-2 s: it imports transformers and datasets) runs where transformers
    # is first used, the reference thread or the merged-side child, not here: the converter,
    # which needs none of them, starts sooner (quantize/measure/reference.py)
    cfg = _config(loaded)
    executor = resolve_executor_name(executor, cfg.executor)  # a typo fails first
    _check_imatrix(cfg)
    paths = ReleasePaths(workdir, loaded.recipe.release.name)
    if cfg.awq is not None:  # before any quant work: the AWQ scheme must fit the model's shapes
        from medrelease.quantize.awq.preflight import preflight_merged

        preflight_merged(paths.merged, list(cfg.awq.ignore), cfg.awq.group_size, loaded=loaded)
    sweep = [lambda p: p.quant]
    with step_run(
        INPUTS, loaded, workdir, reporter, force=force, rerun=rerun, sweep=sweep, quiet=False
    ) as run:
        if run.skipped:  # inputs unchanged since the recorded run (INPUTS.rerun)
            return _verdict(run.skipped)
        # locally the checks run one llama.cpp process at a time: it gets every core we may
        # use (`taskset` and cgroups included), as llama-perplexity takes all it finds; on a
        # cluster each unit reserves its threads as CPUs, so 2 (units run side by side)
        n_threads = threads or (usable_cores() if executor == "local" else 2)
        return _quantize_locked(run, cfg, n_threads, executor, ray_address)


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, cgroup cpusets), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _texts(loaded: LoadedRecipe, cfg: QuantizeConfig) -> dict[str, TextSource]:
    out = {"heldout": load_text("heldout", cfg.checks.heldout, loaded.base_dir)}
    if cfg.awq is not None:
        out["calibration"] = load_text("calibration", cfg.awq.calibration, loaded.base_dir)
    if cfg.gguf is not None and cfg.gguf.imatrix is not None:
        out["imatrix"] = load_text("calibration", cfg.gguf.imatrix.calibration, loaded.base_dir)
    return out


def _eval_plan(loaded: LoadedRecipe, cfg: QuantizeConfig, paths: ReleasePaths) -> EvalPlan | None:
    """checks.eval: the gate tasks on every quant, judged against gates/report.json."""
    if not cfg.checks.eval:
        return None
    from medrelease.quantize.measure.recovery import parent_metrics

    gates = loaded.recipe.gates
    if gates is None or not gates.tasks:
        raise RecipeError(
            "quantize.checks.eval needs the recipe's gates.tasks",
            where=str(loaded.path),
            hint="add gates: with tasks, or set quantize.checks.eval: false",
        )
    if not paths.gate_report.is_file():
        raise InputError(
            f"quantize.checks.eval compares with {paths.gate_report}, which does not exist",
            hint="run `medrelease gate RECIPE` first (same --workdir)",
        )
    # checked against its type first: a truncated or hand-edited report is one clear error
    parent = parent_metrics(read_gate_report(paths.gate_report))
    if not parent:
        raise InputError(f"{paths.gate_report} has no metric values for the merged model")
    return EvalPlan(loaded, parent, cfg.checks.min_recovery)


def _quantize_locked(
    run: StepRun,
    cfg: QuantizeConfig,
    threads: int,
    executor_name: str = "local",
    ray_address: str | None = None,
) -> StepResult[QuantizeRecord]:
    if not (run.paths.merged / "config.json").is_file():
        raise InputError(
            f"no merged model at {run.paths.merged}",
            hint="run `medrelease merge RECIPE` first (same --workdir)",
        )
    merged_files = folder_records(run.paths.merged, run.hashes)
    texts = _texts(run.loaded, cfg)
    eval_plan = _eval_plan(run.loaded, cfg, run.paths)
    # one definition of what quantization depends on (quantize/inputs.py), also used by
    # `release` and `status`: a run with --set/--overlay is recorded as what it was
    components = run.components()
    run.timer.lap("inputs")

    # one unit per GGUF type and one for AWQ (quantize/units.py); a cluster that cannot be
    # reached, or has no node for a unit, fails now, before any conversion or forward pass
    from medrelease.quantize.units import plan_units

    units = plan_units(cfg, run.paths.merged, threads)
    executor = make_executor(executor_name, address=ray_address)
    run.paths.quant.mkdir(parents=True, exist_ok=True)
    # the reference's folder, in the build folder (every Ray node sees it; a `.mr-tmp-` name
    # is swept if we are killed), removed when the step ends
    ref_dir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}quant-reference-", dir=run.paths.quant))
    try:
        executor.check_resources(units)
        # the held-out ids and transformers' logits (every chunk, or the conversion check's
        # one, then in a child) are computed while llama.cpp converts (measure/reference.py)
        from medrelease.quantize.measure.reference import start_reference

        ctx, reference = start_reference(
            run.paths.merged,
            run.loaded.recipe.release.name,
            run.loaded.base_dir,
            texts["heldout"],
            cfg.checks.max_tokens,
            threads,
            run.loaded.recipe.seed,
            run.reporter,
            ref_dir,
            context=cfg.checks.context,
            source=cfg.reference_source(),
            stop_check=run.loaded.recipe.output.stop_check_settings(),
        )
        ctx.eval = eval_plan
        ctx.eos_ids = release_eos_ids(run.paths.merged)
        warnings: list[str] = []
        artifacts, imatrix = _make_and_judge(
            ctx, cfg, run.paths, texts, run, reference, warnings, executor, units
        )
        executor_record = executor.describe()
    finally:
        executor.close()
        shutil.rmtree(ref_dir, ignore_errors=True)
    record = _record(run.paths, cfg, artifacts, texts, merged_files, run.hashes, warnings)
    if imatrix is not None:  # recorded (and listed in outputs) but not published as a quant
        rec = file_record(imatrix.path, run.hashes)
        record["imatrix"] = imatrix.record(run.paths.rel(imatrix.path), rec["sha256"])
        record["outputs"] = dict(
            sorted({**record["outputs"], run.paths.rel(imatrix.path): rec}.items())
        )
    run.hashes.save()
    record["timings"] = run.timer.summary()
    # computed alongside the gguf phase, so not a phase of its own: shown for profiling
    record["timings"]["background_s"] = {"reference": reference.seconds}
    # where the gguf/awq phases went, per quant: making it vs checking it
    record["timings"]["quants_s"] = {f"{a.family} {a.type}": a.seconds for a in artifacts}
    record["executor"] = executor_record  # where the units ran: not an input, numbers alike
    run.record(record, components)
    for w in warnings:
        run.reporter.warn(w)
    return _verdict(StepResult("quantize", record, run.paths.manifest, warnings=warnings))


def _verdict(result: StepResult[QuantizeRecord]) -> StepResult[QuantizeRecord]:
    """The rule on rejected quants (quantize/verdict.py), for a run and a skip alike: a
    rejected required quant raises QuantRejected (exit 5) carrying the recorded result."""
    try:
        enforce(list(result.record.get("quants", [])))
    except QuantRejected as err:
        err.result = result
        raise
    return result


def _make_and_judge(
    ctx: QuantContext,
    cfg: QuantizeConfig,
    paths: ReleasePaths,
    texts: dict[str, TextSource],
    run: StepRun,
    reference: Any,
    warnings: list[str],
    executor: Executor,
    units: list[Unit],
) -> tuple[list[QuantArtifact], Imatrix | None]:
    """Every quant the recipe asks for, made and checked in staging folders, judged, the
    rejected ones moved aside; then the folders renamed into place at once."""
    reporter = run.reporter
    with (
        staging_dir(paths.quant / "gguf", replace=True) as gguf_dir,
        staging_dir(paths.quant / "awq", replace=True) as awq_dir,
        staging_dir(paths.quant / "rejected", replace=True) as rejected_dir,
    ):
        artifacts, imatrix = _make_quants(
            ctx, cfg, (gguf_dir, awq_dir), paths, texts, run, reference, executor, units
        )
        for art in artifacts:
            art.judge()
            warn = (art.checks.get("tokenization") or {}).get("warning")
            if warn and f"{art.family}: {warn}" not in warnings:  # same text for every GGUF
                warnings.append(f"{art.family}: {warn}")
            if not art.accepted:
                reporter.warn(f"{art.family} {art.type} rejected: {art.reason}")
                art.files = _move_rejected(art, rejected_dir / art.family)
        # staging folders are renamed to their final names on leaving this block
    final = {
        "gguf": paths.quant / "gguf",
        "awq": paths.quant / "awq",
        "rejected": paths.quant / "rejected",
    }
    staged = {"gguf": gguf_dir, "awq": awq_dir, "rejected": rejected_dir}
    for art in artifacts:
        art.files = [_relocate(f, staged, final) for f in art.files]
    if imatrix is not None:
        imatrix.path = _relocate(imatrix.path, staged, final)
    for folder in final.values():  # an empty folder would only confuse publish
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    return artifacts, imatrix


def _relocate(f: Path, staged: dict[str, Path], final: dict[str, Path]) -> Path:
    for key, tmp in staged.items():
        if f.is_relative_to(tmp):
            return final[key] / f.relative_to(tmp)
    return f


def _move_rejected(art: QuantArtifact, dest: Path) -> list[Path]:
    if not art.files:  # llama.cpp crashed making it: nothing to keep for inspection
        return []
    dest.mkdir(parents=True, exist_ok=True)
    if art.family == "awq":  # the folder's content (the staging folder itself must stay)
        for item in list(art.entry.iterdir()):
            shutil.move(str(item), dest / item.name)
        art.entry = dest
        return sorted(p for p in dest.rglob("*") if p.is_file())
    moved = []
    for f in art.files:
        moved.append(Path(shutil.move(str(f), dest / f.name)))
    return moved


def _make_quants(
    ctx: QuantContext,
    cfg: QuantizeConfig,
    dirs: tuple[Path, Path],
    paths: ReleasePaths,
    texts: dict[str, TextSource],
    run: StepRun,
    reference: Any,
    executor: Executor,
    units: list[Unit],
) -> tuple[list[QuantArtifact], Imatrix | None]:
    """What the units share, made once here (the GGUF intermediate, the importance matrix;
    for units in other processes also every conversion and the saved reference), then the
    units, through the executor; the artifacts come back in the units' (the recipe's) order."""
    from medrelease.quantize.units import GgufUnit, InProcess, Shared, Source, bind

    reporter, timer = run.reporter, run.timer
    gguf_dir, awq_dir = dirs
    in_process = executor.name == "local"
    cleanup: list[Path] = []
    try:
        builder = None
        imatrix: Imatrix | None = None
        if cfg.gguf is not None:
            from medrelease.quantize.gguf.build import GgufBuilder

            scratch = Path(
                tempfile.mkdtemp(prefix=f"{TMP_PREFIX}gguf-intermediate-", dir=paths.quant)
            )
            cleanup.append(scratch)
            builder = GgufBuilder(ctx, cfg.gguf, gguf_dir, scratch, reporter)
            builder.preflight()
            imatrix = builder.make_imatrix(texts["imatrix"]) if "imatrix" in texts else None
            if reference.source == "gguf":
                _gguf_reference(ctx, builder, reference, cfg.awq is not None, reporter)
                timer.lap("reference")
        source: Source
        if in_process:  # a transformers reference: the first build converts meanwhile
            source = InProcess(ctx, reference.wait, reporter)
        else:
            if builder is not None:
                builder.prepare()  # every conversion here, once: the units only quantize
            reference.wait()  # saved in the build folder every node sees
            assert ctx.reference_dir is not None
            source = Shared.of(ctx, ctx.reference_dir)
            timer.lap("prepare")
        bind(units, source, builder=builder, awq_dir=awq_dir, calibration=texts.get("calibration"))
        n_gguf = sum(isinstance(u.payload, GgufUnit) for u in units)
        done: dict[int, QuantArtifact] = {}
        for i, art in executor.run(units, reporter):
            done[i] = art
            if in_process and i == n_gguf - 1:  # in order: the step's phases as before units
                timer.lap("gguf")
            elif in_process and i >= n_gguf:
                timer.lap("awq")
        if not in_process:
            timer.lap("units")
        return [done[i] for i in range(len(units))], imatrix
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)


def _gguf_reference(
    ctx: QuantContext, builder: Any, job: Any, has_awq: bool, reporter: Reporter
) -> None:
    """The reference from llama.cpp on the GGUF intermediate (quantize.checks.reference),
    with its conversion check in `ctx.conversion`. When there is no sound intermediate (the
    converter crashed, llama.cpp cannot run it, or it fails the check), every GGUF is rejected
    with that reason, and an AWQ quant is judged against transformers' logits instead."""
    from medrelease.quantize.gguf.child import LlamaChildError
    from medrelease.quantize.gguf.quant_types import gguf_type
    from medrelease.quantize.measure.logits import HeldOutIds
    from medrelease.quantize.measure.reference import (
        gguf_reference,
        hf_reference,
        open_reference,
        save_reference,
    )

    outtype = builder.cfg.intermediate
    # the conversion; the merged side (transformers: the held-out ids, the tokenizer's facts,
    # the check's chunk) runs meanwhile in a child, or after it in the converter's process
    builder.prepare(then=job.converter_follow_up())
    job.wait()
    try:
        model = builder.reference_model()
        reporter.info(
            f"scoring the {outtype.upper()} GGUF on held-out text (reference for every quant)"
        )
        ctx.conversion = gguf_reference(
            ctx, model, outtype, job.cross_check, gguf_type(outtype).limits, job.folder
        )
    except LlamaChildError as exc:
        ctx.conversion = exc.record()
    job.cross_check = None  # its memory-mapped pages go now
    if not ctx.conversion["ok"] and has_awq:  # AWQ is judged against transformers instead
        assert isinstance(ctx.heldout_ids, HeldOutIds)
        ctx.reference_logits = hf_reference(ctx.merged, ctx.heldout_ids)
        save_reference(ctx, job.folder)
        ctx.reference_logits, ctx.reference_dir = open_reference(job.folder), job.folder


def _record(
    paths: ReleasePaths,
    cfg: QuantizeConfig,
    artifacts: list[QuantArtifact],
    texts: dict[str, TextSource],
    merged_files: Files,
    hashes: HashCache,
    warnings: list[str],
) -> QuantizeRecord:
    """The step's record (records/quantize.py), which `_quantize_locked` then completes."""
    quants: list[QuantEntry] = []
    outputs: Files = {}
    for art in artifacts:
        files: Files = {paths.rel(f): file_record(f, hashes) for f in sorted(art.files)}
        outputs.update(files)
        quants.append(
            {
                "family": art.family,
                "type": art.type,
                "accepted": art.accepted,
                "reason": art.reason,
                "files": files,
                "size": sum(r["size"] for r in files.values()),
                "checks": art.checks,
                "notes": art.notes,
                "required": cfg.required(art.family, art.type),
                "rejection": None if art.accepted else rejection(art.checks),
            }
        )
    record: QuantizeRecord = {
        # a rejected required quant fails the step: never current, so release stops here
        "status": "failed" if required_rejected(quants) else "done",
        "merged": {"content_hash": digest_of(merged_files)},
        "quants": quants,
        "imatrix": None,  # filled in by _quantize_locked when gguf.imatrix is set
        "texts": {k: {"name": v.name, "sha256": v.sha256} for k, v in texts.items()},
        "settings": cfg.model_dump(mode="json"),
        "outputs": dict(sorted(outputs.items())),
        "warnings": warnings,
    }
    return record
