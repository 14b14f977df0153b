"""llama.cpp in a child process: an abort in native code becomes a reason, not a dead release.

llama.cpp aborts (SIGABRT) on states it considers impossible: a vocabulary without byte tokens
meeting text outside it (`std::out_of_range` in `byte_to_token`), a failed GGML_ASSERT, an
allocation that fails. In the process that holds the release lock and the manifest that kills
the whole step and leaves its temporaries behind. So every llama.cpp call of the quantize step
(tokenization, logits, quantization, token counts, gate tasks on a quant) runs here, in a
`python -m medrelease.quantize.gguf.child JOBDIR` process, and so does the one transformers
task of a GGUF release (`merged_side`: the held-out ids, the tokenizer's facts and the
conversion check's logits), which keeps torch out of the quantize process. A quant's checks
are one child (`check`: contents, tokenization, logits; a crash names the stage it stopped in);
a small model's merged side runs in the converter's process after the conversion (`FollowUp`).

* the parent writes `JOBDIR/job.json` (task name and arguments), starts the child with
  `GGML_NO_BACKTRACE=1` (ggml's abort hook would otherwise fork gdb to print ~180 lines of
  backtrace: ggml/src/ggml.c `ggml_print_backtrace`, and the std::terminate hook in
  ggml/src/ggml.cpp is not even installed when the variable is set at library load), and sends
  the child's stdout+stderr (llama.cpp's log included) to `JOBDIR/log.txt`;
* the child writes `JOBDIR/result.json`, plus `.npy` files for arrays (logits come back as
  files, not through a pipe), or `JOBDIR/error.json` for a Python exception (exit code 3);
* a child killed by a signal or exiting non-zero becomes `LlamaChildError`, whose `reason`
  names the signal and the last lines of llama.cpp's log. JOBDIR is a temporary folder removed
  in every case, and a child still running when the parent is interrupted is killed.

Only the standard library is imported at module level: the child starts fast and the parent
imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

if TYPE_CHECKING:  # the child imports nothing of medrelease's but this module
    from medrelease.quantize.base import EvalPlan
    from medrelease.quantize.measure.stats import TokenStats
    from medrelease.quantize.texts import TextSource
    from medrelease.records.quantize import QuantCheck

# Test hook: `MEDRELEASE_TEST_ABORT_LLAMA_CHILD=<task>[:<substring of the GGUF path>]` makes the
# child call os.abort() before running that task (for that file only), standing in for a native
# crash. Only the tests set it; it is named so nobody sets it by accident.
TEST_ABORT_ENV = "MEDRELEASE_TEST_ABORT_LLAMA_CHILD"
ERROR_EXIT = 3  # a Python exception in the child, described in error.json
LOG_TAIL_LINES = 12


# ---------- what travels: each task's arguments (job.json) and result (result.json) ----------


class TokenizeArgs(TypedDict):
    path: str
    probes: dict[str, tuple[str, bool]]  # probe name -> (text, add BOS/special tokens?)


class Tokenized(TypedDict):
    ids: dict[str, list[int]]  # probe name -> ids
    bos: int | None
    eos: int | None
    n_vocab: int
    metadata: dict[str, str | None]  # the TOKENIZER_KEYS of the GGUF's metadata


class CountArgs(TypedDict):
    path: str
    text: str


class Counted(TypedDict):
    n_tokens: int


class LogitsArgs(TypedDict):
    path: str
    chunks: list[list[int]]
    threads: int
    first: int | None  # keep rows first .. len-2 (the scored ones) only; None: every row


class LogitsFiles(TypedDict):
    files: list[str]  # one .npy per chunk, in the job folder


class ReferenceArgs(TypedDict):
    path: str
    out: str  # the reference folder: logits-NNNN.npy and lse-NNNN.npy per chunk go there
    chunks: list[list[int]]
    first: int
    threads: int


class Referenced(TypedDict):
    chunks: int


class CompareArgs(TypedDict):
    path: str
    reference: str  # a reference folder (quantize/measure/reference.py), heldout.json included
    threads: int


class Compared(TypedDict):
    stats: str  # a measure.stats.TokenStats saved in the job folder


class GenerateArgs(TypedDict):
    path: str
    prompt: list[int]
    eos: list[int]
    max_new_tokens: int
    threads: int


class Generated(TypedDict):
    new: list[int]


class QuantizeArgs(TypedDict):
    source: str
    target: str
    ftype: int
    threads: int
    keep_split: bool


class Quantized(TypedDict):
    rc: int  # llama_model_quantize's return code


class CheckArgs(TypedDict):
    files: list[str]  # every shard of one quant
    merged: str
    quant_type: str
    facts: str  # a folder holding the saved measure.tokenizer_facts.TokenizerFacts
    reference: str | None  # a reference folder; None: no logits (checked before any reference)
    threads: int


class MergedSideArgs(TypedDict):
    merged: str
    heldout_name: str
    heldout_text: str
    max_tokens: int
    context: int
    stop_prompt: str | None
    out: str  # the reference folder: tokenizer facts and the conversion check's logits


class MergedSide(TypedDict):
    error: str | None  # the held-out text cannot be chunked (then nothing else is set)
    chunks: list[list[int]]
    first: int
    reason: str  # how transformers computed the conversion check's logits


class EvaluateArgs(TypedDict):
    path: str
    merged: str
    plan: str  # the pickled EvalPlan's file
    n_ctx: int
    threads: int


class Evaluated(TypedDict):
    result: QuantCheck  # EvalPlan.run's check entry


TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")


class LlamaChildError(Exception):
    """A llama.cpp child that died of a signal or exited non-zero.

    `signal_or_code` is the signal name ("SIGABRT") or the exit code; `log_tail` the last
    lines of its log; `reason` one line for a rejected quant's record."""

    def __init__(
        self,
        signal_or_code: str | int,
        log_tail: str,
        *,
        what: str = "llama.cpp",
        message: str | None = None,
    ):
        self.signal_or_code = signal_or_code
        self.log_tail = log_tail
        self.what = what
        self.message = message  # the child's Python exception, when that is what failed
        super().__init__(self.reason)

    @property
    def signal(self) -> str | None:
        return self.signal_or_code if isinstance(self.signal_or_code, str) else None

    @property
    def reason(self) -> str:
        if self.signal:
            head = f"{self.what} was killed by {self.signal}"
            if self.signal == "SIGABRT":
                head += " (llama.cpp aborted)"
            elif self.signal == "SIGKILL":
                head += " (out of memory?)"
        elif self.message:
            head = f"{self.what} failed: {self.message}"
        else:
            head = f"{self.what} failed (exit {self.signal_or_code})"
        lines = [ln for ln in self.log_tail.splitlines() if ln.strip()]
        if self.message or not lines:
            return head
        return f"{head}; last log lines: " + " | ".join(ln.strip()[:200] for ln in lines[-3:])

    def record(self) -> QuantCheck:
        """The check entry of a quant this failure rejects."""
        out: QuantCheck = {"ok": False, "detail": self.reason}
        if self.signal:
            out["signal"] = self.signal
        elif isinstance(self.signal_or_code, int):
            out["exit_code"] = self.signal_or_code
        out["log_tail"] = [ln for ln in self.log_tail.splitlines() if ln.strip()]
        return out


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every llama.cpp child (converter, tools, this module)."""
    env = {**os.environ, "GGML_NO_BACKTRACE": "1", "TQDM_DISABLE": "1"}
    env.update(extra or {})
    return env


def describe_exit(code: int) -> str | int:
    """'SIGABRT' for a child killed by signal 6 (subprocess reports -6), else the code.

    SIGILL is never the quant's fault: llama.cpp was compiled for instructions this machine
    does not run (e.g. a -march=native build's AMX kernels on a VM that reports AMX without
    enabling it). Every GGUF would be rejected, so it stops the release as a machine problem."""
    if code == -signal.SIGILL:
        from medrelease.core.errors import EnvironmentProblem

        raise EnvironmentProblem(
            "llama.cpp was killed by SIGILL (illegal instruction): this llama-cpp-python build "
            "uses CPU instructions this machine does not run",
            hint="rebuild it for a portable CPU level: `make install` does (x86-64-v3), or "
            "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON' "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python",
        )
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return code


def log_tail(text: str, n: int = LOG_TAIL_LINES) -> str:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def run_process(cmd: list[str], log: Path, *, cwd: Path | None = None) -> int:
    """Run `cmd` with the child environment, stdout+stderr to `log`; return its exit code.

    If the parent is interrupted meanwhile, the child is killed (and reaped) before the
    interruption propagates: nothing keeps writing into folders the parent is removing."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=cwd,
        )
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _job_root(near: Path | None) -> str | None:
    """Where the job folder goes: next to the GGUF (logits of a large vocabulary are big, and
    the release's disk was checked for room; a `.mr-tmp-` name is swept if we are killed),
    else the system's temporary folder."""
    if near is not None and near.parent.is_dir() and os.access(near.parent, os.W_OK):
        return str(near.parent)
    return None


@contextlib.contextmanager
def _job(
    task: str, args: Mapping[str, object], what: str, near: Path | None = None
) -> Iterator[tuple[dict[str, Any], Path]]:
    """Run one task in a child; yield (result, job folder) while the folder still exists."""
    with _ran(task, args, near) as (job, code):
        yield _outcome(job, code, what), job


@contextlib.contextmanager
def _ran(task: str, args: Mapping[str, object], near: Path | None) -> Iterator[tuple[Path, int]]:
    """Run one task in a child; yield (job folder, exit code), the folder removed after."""
    with tempfile.TemporaryDirectory(prefix=".mr-tmp-llama-", dir=_job_root(near)) as tmp:
        job = Path(tmp)
        _write_job(job, task, args)
        cmd = [sys.executable, "-m", "medrelease.quantize.gguf.child", str(job)]
        yield job, run_process(cmd, job / "log.txt")


def _write_job(job: Path, task: str, args: Mapping[str, object]) -> None:
    spec = {"task": task, "args": args, "parent": os.getpid()}
    (job / "job.json").write_text(json.dumps(spec), encoding="utf-8")


def _outcome(job: Path, code: int, what: str) -> dict[str, Any]:
    """The result of the job that ran in `job` and exited with `code`, or LlamaChildError."""
    log_file = job / "log.txt"
    log = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
    if code == -signal.SIGINT:  # Ctrl-C reached the child too: an interruption, not a crash
        raise KeyboardInterrupt
    if code != 0:
        message = None
        err = job / "error.json"
        if code == ERROR_EXIT and err.is_file():
            message = json.loads(err.read_text(encoding="utf-8"))["message"]
        raise LlamaChildError(describe_exit(code), log_tail(log), what=what, message=message)
    result: dict[str, Any] = json.loads((job / "result.json").read_text(encoding="utf-8"))
    result["log"] = log
    return result


# A job that another process runs when its own work is done: the merged side, in the
# converter's process. Where the merged side has to wait for the converter anyway (a small
# model, quantize/measure/reference.py `overlap_is_free`), a process of its own would import
# torch and transformers a second time (3 s, as long as the conversion of a 135M model); the
# converter has them loaded. The converter's process marks the end of the conversion on its
# stderr, then runs the job exactly as a child would (job.json in, result.json or error.json
# and log.txt out), so a crash in the job is told apart from a failed conversion.
FOLLOW_UP_MARK = "MEDRELEASE_FOLLOW_UP"


class FollowUp:
    """A prepared job folder, and how the process that ran it exited (None: it never ran)."""

    def __init__(self, task: str, args: Mapping[str, object], what: str, within: Path):
        """`within`: a folder whose owner removes it in every case (the step's reference
        folder): a follow-up that never runs, because the step failed first, goes with it."""
        self.what = what
        self.folder = Path(tempfile.mkdtemp(prefix=".mr-tmp-llama-", dir=within))
        _write_job(self.folder, task, args)
        self.returncode: int | None = None

    def code(self) -> str:
        """Python statements that run it, appended to the other process's `python -c` code."""
        call = f"run_follow_up({str(self.folder)!r})"
        return f"from medrelease.quantize.gguf.child import run_follow_up\n{call}"

    def outcome(self) -> dict[str, Any]:
        assert self.returncode is not None, "only a follow-up that ran has an outcome"
        return _outcome(self.folder, self.returncode, self.what)

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def run_follow_up(folder: str) -> None:
    """In the process whose own work just ended: mark that, send this process's output to the
    job's log, and run the job as `python -m medrelease.quantize.gguf.child` would."""
    print(FOLLOW_UP_MARK, file=sys.stderr, flush=True)
    from medrelease.core.heap import give_back_freed_memory

    give_back_freed_memory()  # the converter's buffers, before the job's own
    job = Path(folder)
    sys.stdout.flush()
    fd = os.open(job / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = sys.stderr
    code = child_main(job)
    # The job's outcome is written and the converter closed its GGUF: nothing is left for
    # the interpreter's shutdown but tearing down torch and transformers (0.3-0.45 s on
    # SmolLM2-135M), which the quantize step would wait for before the reference pass.
    sys.stderr.flush()
    os._exit(code)


def skip_sklearn() -> None:
    """Make transformers see no scikit-learn in this process. `import transformers` imports
    it (0.7 s, for assisted generation's `roc_curve` only) whenever it is installed, and
    lm-eval installs it; no child of the quantize step generates with an assistant model.
    A None entry in sys.modules is what importlib.util.find_spec reports as absent."""
    sys.modules.setdefault("sklearn", None)  # type: ignore[arg-type]


# ---------- the parent's API ----------


def gguf_chunk_logits(
    path: Path, chunks: list[list[int]], threads: int, first: int | None = None
) -> list[Any]:
    """float32 logits [len(chunk), n_vocab] of each chunk, each from a fresh KV state; with
    `first`, only the scored rows first .. len(chunk)-2 (half the bytes to write and read).

    Raises LlamaChildError if llama.cpp aborts or cannot load the file."""
    import numpy as np

    args: LogitsArgs = {
        "path": str(path),
        "chunks": [list(map(int, c)) for c in chunks],
        "threads": threads,
        "first": first,
    }
    with _job("logits", args, f"llama.cpp logits on {path.name}", path) as (result, job):
        return [np.load(job / name) for name in result["files"]]


def gguf_reference_logits(
    path: Path, out: Path, chunks: list[list[int]], first: int, threads: int
) -> None:
    """The scored rows' logits (float32) and their log-sum-exps (float64) of every chunk, as
    `out/logits-NNNN.npy` and `out/lse-NNNN.npy`: a reference folder's arrays, written by the
    child straight to disk (reference.py writes the folder's heldout.json)."""
    args: ReferenceArgs = {
        "path": str(path),
        "out": str(out),
        "chunks": [list(map(int, c)) for c in chunks],
        "first": first,
        "threads": threads,
    }
    with _job("reference", args, f"llama.cpp logits on {path.name}", path):
        return


def gguf_compare(path: Path, reference: Path, threads: int) -> TokenStats:
    """Every scored token's measures (measure/stats.py) of the GGUF against the reference
    folder, computed in the child one chunk at a time."""
    from medrelease.quantize.measure.stats import TokenStats

    args: CompareArgs = {"path": str(path), "reference": str(reference), "threads": threads}
    with _job("compare", args, f"llama.cpp logits on {path.name}", path) as (result, job):
        return TokenStats.load(job / result["stats"])  # read while the job folder exists


def gguf_tokenize_probes(path: Path, probes: dict[str, tuple[str, bool]]) -> Tokenized:
    """llama.cpp's tokenization of each probe (text, add BOS/special?), in a child."""
    args: TokenizeArgs = {
        "path": str(path),
        "probes": {k: (t, bool(s)) for k, (t, s) in probes.items()},
    }
    with _job("tokenize", args, f"llama.cpp tokenizer of {path.name}", path) as (result, _):
        return {
            "ids": result["ids"],
            "bos": result["bos"],
            "eos": result["eos"],
            "n_vocab": result["n_vocab"],
            "metadata": result["metadata"],
        }


def gguf_count_tokens(path: Path, text: str) -> int:
    """Tokens llama.cpp makes of `text` (with BOS), loading the vocabulary only."""
    args: CountArgs = {"path": str(path), "text": text}
    with _job("count_tokens", args, f"llama.cpp tokenizer of {path.name}", path) as (result, _):
        return int(result["n_tokens"])


@dataclass
class QuantChecked:
    """What the `check` child found, stage by stage; a stage it did not reach is None, and
    `error` says why it stopped (None: it finished, or stopped at a failed vocabulary)."""

    contents: dict[str, dict[str, Any]] | None  # {"vocabulary": ..., "contents": ...}
    tokenized: Tokenized | None
    stats: TokenStats | None
    error: LlamaChildError | None


# what the error of each stage of the `check` child is named after (a reason names its check)
CHECK_STAGES = {
    "contents": "the gguf reader on {}",
    "tokenized": "llama.cpp tokenizer of {}",
    "stats": "llama.cpp logits on {}",
}


def gguf_check(
    files: list[Path],
    merged: Path,
    quant_type: str,
    facts: Path,
    reference: Path | None,
    threads: int,
) -> QuantChecked:
    """One quant's checks in one child: what the GGUF contains (quantize/gguf/contents.py,
    gguf-py's reader: about twenty Python objects per vocabulary entry, which the parent would
    keep), then, if its vocabulary is sound, llama.cpp's tokenization of the probes, then its
    logits against the reference folder, chunk by chunk, as `llama-perplexity
    --kl-divergence` does. Each stage leaves its result in the job folder as soon as it is
    done, so a crash is the stage's whose result is missing, and the stages before it stand."""
    from medrelease.quantize.measure.stats import TokenStats

    args: CheckArgs = {
        "files": [str(f) for f in files],
        "merged": str(merged),
        "quant_type": quant_type,
        "facts": str(facts),
        "reference": None if reference is None else str(reference),
        "threads": threads,
    }
    with _ran("check", args, files[0]) as (job, code):
        done = {name: (job / f"{name}.json").is_file() for name in ("contents", "tokenized")}
        stage = next((n for n, ok in done.items() if not ok), "stats")
        error = None
        try:
            _outcome(job, code, CHECK_STAGES[stage].format(files[0].name))
        except LlamaChildError as exc:
            error = exc
        return QuantChecked(
            _read_stage(job, "contents"),
            cast("Tokenized | None", _read_stage(job, "tokenized")),
            # the last stage: complete only if the child finished (a kill may cut its file)
            TokenStats.load(job / "stats.npz")
            if error is None and (job / "stats.npz").is_file()
            else None,
            error,
        )


def _read_stage(job: Path, name: str) -> Any:
    path = job / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_stage(job: Path, name: str, value: object) -> None:
    """A stage's result, in place at once (renamed): present means complete."""
    from medrelease.core.atomic import atomic_write_json

    atomic_write_json(job / f"{name}.json", value)


def merged_side_args(
    merged: Path,
    heldout: TextSource,
    max_tokens: int,
    context: int,
    stop_prompt: str | None,
    out: Path,
) -> MergedSideArgs:
    """The merged side's job: held-out text and settings; `out` is the reference folder."""
    return {
        "merged": str(merged),
        "heldout_name": heldout.name,
        "heldout_text": heldout.text,
        "max_tokens": max_tokens,
        "context": context,
        "stop_prompt": stop_prompt,
        "out": str(out),
    }


MERGED_SIDE = "transformers on the merged model"


def merged_side_in_child(args: MergedSideArgs, ran: FollowUp | None = None) -> MergedSide:
    """The merged model's side of a GGUF reference, in transformers, in a child (the one
    task here that is not llama.cpp: it keeps torch out of the quantize process;
    quantize/measure/reference.py `merged_side`); or the outcome of `ran`, the same job run
    by the converter's process, when it ran."""
    if ran is not None and ran.returncode is not None:  # the converter's process ran it
        return cast("MergedSide", ran.outcome())
    with _job("merged_side", args, MERGED_SIDE, Path(args["out"])) as (result, _):
        return cast("MergedSide", result)


def merged_side_follow_up(args: MergedSideArgs) -> FollowUp:
    """`merged_side_in_child`'s job, prepared for the converter's process to run."""
    return FollowUp("merged_side", args, MERGED_SIDE, Path(args["out"]))  # the reference folder


def gguf_quantize(
    source: Path, target: Path, ftype: int, threads: int, keep_split: bool
) -> tuple[int, str]:
    """llama_model_quantize(source -> target) in a child: (llama.cpp's return code, its log)."""
    args: QuantizeArgs = {
        "source": str(source),
        "target": str(target),
        "ftype": ftype,
        "threads": threads,
        "keep_split": keep_split,
    }
    with _job("quantize", args, f"llama.cpp quantizer ({target.name})", target) as (result, _):
        return int(result["rc"]), str(result["log"])


def gguf_greedy(
    path: Path, prompt_ids: list[int], eos_ids: list[int], max_new_tokens: int, threads: int
) -> list[int]:
    """Greedy decoding (argmax of llama.cpp's logits) from `prompt_ids`, in a child: the new
    ids, ending at the first of `eos_ids` or after `max_new_tokens`."""
    args: GenerateArgs = {
        "path": str(path),
        "prompt": [int(i) for i in prompt_ids],
        "eos": [int(i) for i in eos_ids],
        "max_new_tokens": int(max_new_tokens),
        "threads": threads,
    }
    with _job("generate", args, f"llama.cpp generation on {path.name}", path) as (result, _):
        return [int(i) for i in result["new"]]


def gguf_evaluate(path: Path, merged: Path, plan: EvalPlan, n_ctx: int, threads: int) -> QuantCheck:
    """`plan.run(LlamaCppLM(...))` (the gate tasks on the quant) in a child."""
    with tempfile.TemporaryDirectory(prefix="medrelease-llama-plan-") as tmp:
        plan_file = Path(tmp) / "plan.pickle"
        # our own object, to our own child: pickle is the simple, faithful way across
        plan_file.write_bytes(pickle.dumps(plan))
        args: EvaluateArgs = {
            "path": str(path),
            "merged": str(merged),
            "plan": str(plan_file),
            "n_ctx": n_ctx,
            "threads": threads,
        }
        with _job("evaluate", args, f"gate tasks on {path.name} (llama.cpp)", path) as (result, _):
            check: QuantCheck = result["result"]
            return check


# ---------- the child's side ----------


def open_llama(path: str, n_ctx: int, threads: int, *, verbose: bool = True, **extra: Any) -> Any:
    """A llama_cpp.Llama with logits for every position unless `logits_all=False` is passed
    (verbose in a child: its log is the child's log, whose tail explains a crash). Flash
    attention is on, as llama.cpp's own tools resolve their default (`auto`) on a CPU: the
    same kernels as llama-perplexity, and ~10% faster at 512 tokens of context
    (llama-cpp-python's default is off)."""
    from llama_cpp import Llama

    extra.setdefault("flash_attn", True)
    extra.setdefault("logits_all", True)
    n = max(n_ctx, 64)
    return Llama(
        model_path=path,
        n_ctx=n,
        n_batch=n,
        n_ubatch=n,
        n_gpu_layers=0,
        n_threads=threads,
        verbose=verbose,
        **extra,
    )


def tokenize_with(
    llm: Any, probes: dict[str, tuple[str, bool]], *, trace: bool = False
) -> Tokenized:
    """What a loaded llama.cpp model makes of the probes (shared by child and in-process use).

    `trace` logs each probe first, so a crash's log tail says which text llama.cpp died on."""
    ids: dict[str, list[int]] = {}
    for name, (text, add_special) in probes.items():
        if trace:
            print(f"medrelease: tokenizing probe {name}", file=sys.stderr, flush=True)
        ids[name] = [
            int(i) for i in llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)
        ]
    meta = llm.metadata

    def token_id(value: int) -> int | None:
        return int(value) if value is not None and int(value) >= 0 else None

    return {
        "ids": ids,
        "bos": token_id(llm.token_bos()),
        "eos": token_id(llm.token_eos()),
        "n_vocab": int(llm.n_vocab()),
        "metadata": {k: meta.get(k) for k in TOKENIZER_KEYS},
    }


def _task_tokenize(args: TokenizeArgs, job: Path) -> Tokenized:
    return _tokenize_file(args["path"], {k: (t, s) for k, (t, s) in args["probes"].items()})


def _tokenize_file(path: str, probes: dict[str, tuple[str, bool]]) -> Tokenized:
    """`tokenize_with` on the GGUF's vocabulary alone (no weights loaded)."""
    from llama_cpp import Llama

    llm = Llama(model_path=path, vocab_only=True, verbose=True)
    try:
        return tokenize_with(llm, probes, trace=True)
    finally:
        llm.close()


def _task_count_tokens(args: CountArgs, job: Path) -> Counted:
    from llama_cpp import Llama

    llm = Llama(model_path=args["path"], vocab_only=True, verbose=True)
    try:
        return {"n_tokens": len(llm.tokenize(args["text"].encode("utf-8"), add_bos=True))}
    finally:
        llm.close()


def _task_logits(args: LogitsArgs, job: Path) -> LogitsFiles:
    import numpy as np

    chunks, first = args["chunks"], args.get("first")
    if first is not None:  # the scored rows only: the LM head runs only there
        rows = _scored_rows(args["path"], chunks, first, args["threads"])
    else:
        rows = _all_rows(args["path"], chunks, args["threads"])
    files = []
    for i, arr in rows:
        name = f"logits-{i:05d}.npy"
        np.save(job / name, arr)
        files.append(name)
    return {"files": files}


def _all_rows(path: str, chunks: list[list[int]], threads: int) -> Iterator[tuple[int, Any]]:
    """Every position's logits of each chunk, from a fresh KV state."""
    import numpy as np

    llm = open_llama(path, max((len(c) for c in chunks), default=1), threads)
    try:
        for i, ids in enumerate(chunks):
            print(f"medrelease: logits of chunk {i} ({len(ids)} tokens)", file=sys.stderr)
            llm.reset()
            llm.eval(ids)
            yield i, np.array(llm.scores[: len(ids), :], dtype=np.float32)
    finally:
        llm.close()


def _scored_rows(
    path: str, chunks: list[list[int]], first: int, threads: int
) -> Iterator[tuple[int, Any]]:
    """Each chunk's scored rows (first .. len-2) from a fresh KV state, as llama-perplexity
    evaluates them: the LM head runs only where a row is scored (`decode_scored`)."""
    llm = open_llama(path, max(len(c) for c in chunks), threads, logits_all=False)
    try:
        for i, ids in enumerate(chunks):
            print(f"medrelease: logits of chunk {i} ({len(ids)} tokens)", file=sys.stderr)
            yield i, decode_scored(llm, ids, first)
    finally:
        llm.close()


def decode_scored(llm: Any, ids: list[int], first: int) -> Any:
    """float32 logits of positions first .. len(ids)-2 of `ids`, decoded from an empty KV cache.

    llama-cpp-python's `Llama.eval` asks llama.cpp for an output at every position (or only the
    last), and the LM head is then computed at all of them: at a 49k vocabulary on a 135M model
    that is a fifth of the work, spent on rows nobody scores. llama-perplexity marks only the
    scored positions in its batch (`batch.logits`); so does this, through llama.cpp's own
    batch API. The outputs come back contiguous, in the batch's order."""
    import llama_cpp
    import numpy as np

    n, n_out = len(ids), len(ids) - 1 - first
    if n_out < 1:
        raise ValueError(f"a chunk of {n} tokens has no row to score after position {first}")
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    batch = llama_cpp.llama_batch_init(n, 0, 1)
    try:
        batch.n_tokens = n
        for pos, token in enumerate(ids):
            batch.token[pos] = token
            batch.pos[pos] = pos
            batch.n_seq_id[pos] = 1
            batch.seq_id[pos][0] = 0
            batch.logits[pos] = first <= pos < n - 1
        rc = llama_cpp.llama_decode(llm.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} on a chunk of {n} tokens")
        vocab = int(llm.n_vocab())
        out = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_out * vocab,))
        return out.reshape(n_out, vocab).copy()  # llama.cpp reuses its buffer on the next decode
    finally:
        llama_cpp.llama_batch_free(batch)


def _task_reference(args: ReferenceArgs, job: Path) -> Referenced:
    import numpy as np

    from medrelease.quantize.measure.stats import logsumexp_rows

    out, n = Path(args["out"]), 0
    for i, rows in _scored_rows(args["path"], args["chunks"], args["first"], args["threads"]):
        for name, arr in (
            (f"logits-{i:04d}.npy", rows),
            (f"lse-{i:04d}.npy", logsumexp_rows(rows, args["threads"])),
        ):
            tmp = out / f".{name}.part"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, out / name)
        n += 1
    return {"chunks": n}


def _task_compare(args: CompareArgs, job: Path) -> Compared:
    _compare(args["path"], Path(args["reference"]), args["threads"]).save(job / "stats.npz")
    return {"stats": "stats.npz"}


def _compare(path: str, ref: Path, threads: int) -> TokenStats:
    """Every scored token's measures of the GGUF at `path` against the reference folder."""
    import numpy as np

    from medrelease.quantize.measure.stats import TokenStats, token_stats

    meta = json.loads((ref / "heldout.json").read_text(encoding="utf-8"))
    chunks, first = meta["chunks"], int(meta["first"])
    parts = []
    for i, rows in _scored_rows(path, chunks, first, threads):
        logits = np.load(ref / f"logits-{i:04d}.npy", mmap_mode="r")
        lse = np.load(ref / f"lse-{i:04d}.npy", mmap_mode="r")
        targets = np.asarray(chunks[i][first + 1 :])
        parts.append(token_stats(logits, lse, rows, targets, threads))
        del logits, lse, rows
    return TokenStats.concat(parts)


def _task_generate(args: GenerateArgs, job: Path) -> Generated:
    import numpy as np

    prompt = args["prompt"]
    eos, budget = set(args["eos"]), int(args["max_new_tokens"])
    llm = open_llama(args["path"], len(prompt) + budget, args["threads"])
    new: list[int] = []
    try:
        llm.eval(prompt)
        while len(new) < budget:
            # plain argmax (no sampler chain, no repetition penalty): greedy as transformers does
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            new.append(token)
            if token in eos:
                break
            llm.eval([token])
    finally:
        llm.close()
    return {"new": new}


def _task_quantize(args: QuantizeArgs, job: Path) -> Quantized:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(args["ftype"])
    params.nthread = int(args["threads"])
    params.keep_split = bool(args["keep_split"])
    rc = llama_cpp.llama_model_quantize(
        args["source"].encode(), args["target"].encode(), ctypes.byref(params)
    )
    return {"rc": int(rc)}


def _task_check(args: CheckArgs, job: Path) -> dict[str, bool]:
    """`gguf_check`'s stages; each result is written as soon as it is known."""
    from medrelease.quantize.gguf.contents import check_gguf_files
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    facts = TokenizerFacts.load(Path(args["facts"]))
    files = [Path(f) for f in args["files"]]
    print(f"medrelease: reading {files[0].name} (gguf-py)", file=sys.stderr, flush=True)
    contents = check_gguf_files(files, Path(args["merged"]), args["quant_type"], facts)
    _write_stage(job, "contents", contents)
    if not contents["vocabulary"]["ok"]:
        return {"complete": False}  # llama.cpp would tokenize with the wrong vocabulary, or abort
    _test_abort("tokenize", {"path": args["files"][0]})
    _write_stage(job, "tokenized", _tokenize_file(args["files"][0], facts.probes))
    if args["reference"] is None:
        return {"complete": True}
    _test_abort("compare", {"path": args["files"][0]})
    _compare(args["files"][0], Path(args["reference"]), args["threads"]).save(job / "stats.npz")
    return {"complete": True}


def _task_merged_side(args: MergedSideArgs, job: Path) -> MergedSide:
    skip_sklearn()
    from medrelease.quantize.measure.reference import task_merged_side
    from medrelease.quantize.texts import TextSource

    heldout = TextSource(args["heldout_name"], args["heldout_text"])
    out = task_merged_side(
        Path(args["merged"]),
        heldout,
        args["max_tokens"],
        args["context"],
        args["stop_prompt"],
        Path(args["out"]),
    )
    return cast("MergedSide", out)


def _task_evaluate(args: EvaluateArgs, job: Path) -> Evaluated:
    from transformers import AutoTokenizer

    from medrelease.quantize.gguf.lm import LlamaCppLM

    plan = pickle.loads(Path(args["plan"]).read_bytes())  # written by our parent (above)
    tokenizer = AutoTokenizer.from_pretrained(args["merged"])
    llm = open_llama(args["path"], int(args["n_ctx"]), int(args["threads"]))
    try:
        return {"result": plan.run(LlamaCppLM(llm, Path(args["path"]), tokenizer))}
    finally:
        llm.close()


# task name -> its function; job.json is JSON, so each task reads its own TypedDict from it
TASKS: dict[str, Callable[[Any, Path], Mapping[str, object]]] = {
    "tokenize": _task_tokenize,
    "count_tokens": _task_count_tokens,
    "logits": _task_logits,
    "reference": _task_reference,
    "compare": _task_compare,
    "generate": _task_generate,
    "quantize": _task_quantize,
    "evaluate": _task_evaluate,
    "merged_side": _task_merged_side,
    "check": _task_check,
}


def _test_abort(task: str, args: Mapping[str, object]) -> None:
    spec = os.environ.get(TEST_ABORT_ENV)
    if not spec:
        return
    want, _, match = spec.partition(":")
    target = str(args.get("path") or args.get("target") or "")
    if want == task and match in target:
        print(f"medrelease: {TEST_ABORT_ENV}: aborting in {task}", file=sys.stderr, flush=True)
        os.abort()


def _die_with_parent(parent: int) -> None:
    """If the parent is killed (SIGKILL, SIGTERM: no chance to kill us), do not run on."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def child_main(job: Path) -> int:
    spec = json.loads((job / "job.json").read_text(encoding="utf-8"))
    _die_with_parent(int(spec["parent"]))
    task, args = spec["task"], spec["args"]
    _test_abort(task, args)
    try:
        result = TASKS[task](args, job)
    except Exception as exc:  # reported to the parent, which decides what it means
        message = f"{type(exc).__name__}: {exc}".strip()
        (job / "error.json").write_text(json.dumps({"message": message}), encoding="utf-8")
        print(f"medrelease: {message}", file=sys.stderr, flush=True)
        return ERROR_EXIT
    (job / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.stdout = sys.stderr  # one ordered log; results travel through files
    raise SystemExit(child_main(Path(sys.argv[1])))
