"""The quantize step's units of work: one GGUF type (quantize + its checks), or the AWQ scheme.

What the units share is made once, where the step runs: the high-precision GGUF intermediate
and the importance matrix (llama.cpp's converter and llama-imatrix), and the merged model's
reference logits. Then each unit makes one quant in the step's staging folder, checks it and
returns the artifact (file paths and check records); the step judges them in the recipe's
order, so its record does not depend on where the units ran.

* `--executor local` (the default): the units run in this process with the step's own
  objects (`InProcess`), exactly as the step ran before it had units: the conversion happens
  in the first type's build while the reference is still computing in its thread.
* `--executor ray`: every conversion is done first (`GgufBuilder.prepare`), the reference is
  saved into the release's build folder (`reference.save_reference`), and each unit is a Ray
  task that rebuilds its context from there (`Shared`): every node must see the build folder
  and merged/ at the driver's paths (a shared filesystem, as for the gate's units). Each unit
  memory-maps the reference, so a node holds the logits once in its page cache, not per task.

Resources a unit reserves: `threads` CPUs (llama.cpp's and torch's threads) and an estimate
of its memory: the quant's size (llama.cpp loads it for the logits) plus 1 GiB for a GGUF
type; three copies of the weights plus 1 GiB for AWQ (the model being calibrated, its cached
activations, the quant loaded back for the checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem
from medrelease.executors import Resources, Unit
from medrelease.quantize.base import EvalPlan, QuantArtifact, QuantContext
from medrelease.quantize.config import AwqConfig, GgufConfig, QuantizeConfig
from medrelease.quantize.measure.limits import Thresholds
from medrelease.quantize.texts import TextSource
from medrelease.records.quantize import QuantCheck

if TYPE_CHECKING:
    from medrelease.quantize.gguf.build import GgufBuilder

GIB = 2**30
AWQ_WEIGHT_COPIES = 3


@dataclass
class InProcess:
    """The local executor's units use the step's own objects (never pickled)."""

    ctx: QuantContext
    reference_ready: Callable[[], object]  # the reference thread's wait()
    reporter: Reporter

    def context(self) -> QuantContext:
        return self.ctx

    def ready(self) -> None:
        self.reference_ready()

    def progress(self) -> Reporter:
        return self.reporter


@dataclass
class Shared:
    """What a unit in another process (a Ray worker) needs to rebuild the step's context:
    paths on the shared build folder, the reference saved there, and the step's settings."""

    merged: Path
    release: str
    base_dir: Path
    threads: int
    seed: int
    reference_dir: Path
    eval: EvalPlan | None = None
    stop_check: Any = None
    eos_ids: list[int] = field(default_factory=list)
    conversion: QuantCheck | None = None

    @classmethod
    def of(cls, ctx: QuantContext, reference_dir: Path) -> Shared:
        return cls(
            merged=ctx.merged,
            release=ctx.release,
            base_dir=ctx.base_dir,
            threads=ctx.threads,
            seed=ctx.seed,
            reference_dir=reference_dir,
            eval=ctx.eval,
            stop_check=ctx.stop_check,
            eos_ids=list(ctx.eos_ids),
            conversion=ctx.conversion,
        )

    def context(self) -> QuantContext:
        from medrelease.quantize.measure.reference import load_reference

        for folder in (self.merged, self.reference_dir):
            if not folder.is_dir():  # only on a cluster: the driver wrote it
                import socket

                raise EnvironmentProblem(
                    f"{socket.gethostname()} cannot see the folder {folder}",
                    hint="every Ray node must see the release's build folder (--workdir) at "
                    "the driver's paths (a shared filesystem), or run with --executor local",
                )
        ctx = QuantContext(
            merged=self.merged,
            release=self.release,
            base_dir=self.base_dir,
            tokenizer=None,
            heldout_ids=[],
            reference_logits=None,
            threads=self.threads,
            seed=self.seed,
            eval=self.eval,
            stop_check=self.stop_check,
            eos_ids=list(self.eos_ids),
            conversion=self.conversion,
        )
        load_reference(ctx, self.reference_dir)
        return ctx

    def ready(self) -> None:
        return None  # saved before any unit was submitted

    def progress(self) -> Reporter:
        return Reporter(quiet=True)  # a worker's console is not the user's


Source = InProcess | Shared


@dataclass
class GgufUnit:
    type: str
    limits: Thresholds
    source: Source | None = None
    builder: GgufBuilder | None = None  # in process: the step's builder (converts lazily)
    # in another process: GgufBuilder.restore's arguments (cfg, out_dir, scratch, state)
    remote_builder: tuple[GgufConfig, Path, Path, dict[str, Any]] | None = None


@dataclass
class AwqUnit:
    cfg: AwqConfig
    out_dir: Path | None = None
    calibration: TextSource | None = None
    source: Source | None = None


def run_gguf(unit: GgufUnit, state: dict[str, Any]) -> QuantArtifact:
    """Quantize one GGUF type from the intermediate and check it against the merged model.
    A llama.cpp crash becomes a rejected artifact (GgufBuilder.build, check_gguf)."""
    from medrelease.quantize.gguf.build import GgufBuilder
    from medrelease.quantize.gguf.check import check_gguf

    assert unit.source is not None
    ctx = unit.source.context()
    builder = unit.builder
    if builder is None:
        assert unit.remote_builder is not None
        cfg, out_dir, scratch, saved = unit.remote_builder
        builder = GgufBuilder.restore(ctx, cfg, out_dir, scratch, unit.source.progress(), saved)
    t0 = time.perf_counter()
    art = builder.build(unit.type)
    t1 = time.perf_counter()
    unit.source.ready()  # the checks compare with the merged model's logits
    t2 = time.perf_counter()
    check_gguf(art, ctx, unit.limits)
    art.seconds = {
        "build": round(t1 - t0, 3),  # in process, the first one includes the conversion
        "wait_reference": round(t2 - t1, 3),
        "check": round(time.perf_counter() - t2, 3),
    }
    return art


def run_awq(unit: AwqUnit, state: dict[str, Any]) -> QuantArtifact:
    """Calibrate and quantize with llm-compressor, then check the folder and its logits."""
    from medrelease.quantize.awq.build import quiet_llmcompressor

    assert unit.source is not None and unit.out_dir is not None and unit.calibration is not None
    unit.source.ready()  # AWQ's checks need the reference, and torch's threads are free then
    ctx = unit.source.context()
    with quiet_llmcompressor():
        return make_awq(ctx, unit.cfg, unit.out_dir, unit.calibration, unit.source.progress())


def make_awq(
    ctx: QuantContext,
    cfg: AwqConfig,
    out_dir: Path,
    calibration: TextSource,
    reporter: Reporter,
) -> QuantArtifact:
    from medrelease.quantize.awq.build import quantize_awq
    from medrelease.quantize.awq.check import DEFAULT_LIMITS, check_awq
    from medrelease.quantize.measure.judge import merged_limits
    from medrelease.quantize.texts import calibration_chats, render_calibration

    texts, templated = render_calibration(ctx.hf_tokenizer(), calibration_chats(calibration.text))
    notes = (
        [] if templated else ["calibrated on plain text: the merged tokenizer has no chat template"]
    )
    t0 = time.perf_counter()
    quantize_awq(ctx.merged, out_dir, cfg, texts, seed=ctx.seed, reporter=reporter)
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    art = QuantArtifact("awq", cfg.scheme, files, out_dir, notes=notes)
    t1 = time.perf_counter()
    defaults = DEFAULT_LIMITS[cfg.scheme]
    check_awq(art, ctx, merged_limits(defaults, cfg.thresholds), cfg)
    art.seconds = {"build": round(t1 - t0, 3), "check": round(time.perf_counter() - t1, 3)}
    return art


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors") if p.is_file())


def plan_units(cfg: QuantizeConfig, merged: Path, threads: int) -> list[Unit]:
    """One unit per GGUF type in the recipe's order, then one for the AWQ scheme, with their
    resources; where they get their inputs from is bound later (`bind`)."""
    from medrelease.quantize.gguf.files import parameter_count
    from medrelease.quantize.gguf.quant_types import gguf_type
    from medrelease.quantize.measure.judge import merged_limits

    units: list[Unit] = []
    if cfg.gguf is not None:
        n_params = parameter_count(merged)
        for name in cfg.gguf.types:
            qtype = gguf_type(name)
            limits = merged_limits(qtype.limits, cfg.gguf.thresholds.get(qtype.name))
            units.append(
                Unit(
                    key=f"quantize-gguf-{qtype.name}",
                    label=f"gguf {qtype.name}: quantize + check",
                    fn=run_gguf,
                    payload=GgufUnit(qtype.name, limits),
                    resources=Resources(
                        num_cpus=float(threads), memory=int(n_params * qtype.bpw / 8) + GIB
                    ),
                )
            )
    if cfg.awq is not None:
        memory = AWQ_WEIGHT_COPIES * _weights_bytes(merged) + GIB
        units.append(
            Unit(
                key=f"quantize-awq-{cfg.awq.scheme}",
                label=f"awq {cfg.awq.scheme}: calibrate + check",
                fn=run_awq,
                payload=AwqUnit(cfg.awq),
                resources=Resources(num_cpus=float(threads), memory=memory),
            )
        )
    return units


def bind(
    units: list[Unit],
    source: Source,
    *,
    builder: GgufBuilder | None,
    awq_dir: Path,
    calibration: TextSource | None,
) -> None:
    """Tell every unit where its inputs are: the step's objects (in process) or the shared
    build folder (another process: the builder travels as its state, not as itself)."""
    for unit in units:
        payload = unit.payload
        payload.source = source
        if isinstance(payload, GgufUnit):
            assert builder is not None
            if isinstance(source, InProcess):
                payload.builder = builder
            else:
                payload.remote_builder = (
                    builder.cfg,
                    builder.out_dir,
                    builder.scratch,
                    builder.state(),
                )
        else:
            payload.out_dir, payload.calibration = awq_dir, calibration
