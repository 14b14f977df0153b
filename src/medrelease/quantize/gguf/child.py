"""llama.cpp in a child process: an abort in native code becomes a reason, not a dead release.

llama.cpp aborts (SIGABRT) on states it considers impossible: a vocabulary without byte tokens
meeting text outside it (`std::out_of_range` in `byte_to_token`), a failed GGML_ASSERT, an
allocation that fails. In the process that holds the release lock and the manifest that kills
the whole step and leaves its temporaries behind. So every llama.cpp call of the quantize step
(tokenization, logits, quantization, token counts, gate tasks on a quant) runs here, in a
`python -m medrelease.quantize.gguf.child JOBDIR` process, and so does the one transformers
task of a GGUF release (`merged_side`: the held-out ids, the tokenizer's facts and the
conversion check's logits), which keeps torch out of the quantize process:

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


class ContentsArgs(TypedDict):
    files: list[str]  # every shard of one quant
    merged: str
    quant_type: str
    facts: str  # a saved measure.tokenizer_facts.TokenizerFacts


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
    with tempfile.TemporaryDirectory(prefix=".mr-tmp-llama-", dir=_job_root(near)) as tmp:
        job = Path(tmp)
        spec = {"task": task, "args": args, "parent": os.getpid()}
        (job / "job.json").write_text(json.dumps(spec), encoding="utf-8")
        cmd = [sys.executable, "-m", "medrelease.quantize.gguf.child", str(job)]
        code = run_process(cmd, job / "log.txt")
        log = (job / "log.txt").read_text(encoding="utf-8", errors="replace")
        if code == -signal.SIGINT:  # Ctrl-C reached the child too: an interruption, not a crash
            raise KeyboardInterrupt
        if code != 0:
            message = None
            err = job / "error.json"
            if code == ERROR_EXIT and err.is_file():
                message = json.loads(err.read_text(encoding="utf-8"))["message"]
            raise LlamaChildError(describe_exit(code), log_tail(log), what=what, message=message)
        result = json.loads((job / "result.json").read_text(encoding="utf-8"))
        result["log"] = log
        yield result, job


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


def gguf_contents(
    files: list[Path], merged: Path, quant_type: str, facts: Path
) -> dict[str, dict[str, Any]]:
    """quantize/gguf/contents.py `check_gguf_files`, in a child: gguf-py's reader makes about
    twenty Python objects per vocabulary entry (two seconds and 200 MB for a 49k vocabulary,
    which the parent would keep), and a file it cannot parse fails here, not in the step."""
    args: ContentsArgs = {
        "files": [str(f) for f in files],
        "merged": str(merged),
        "quant_type": quant_type,
        "facts": str(facts),
    }
    with _job("contents", args, f"the gguf reader on {files[0].name}", files[0]) as (result, _):
        return {k: v for k, v in result.items() if k != "log"}  # the checks, not the log


def merged_side_in_child(
    merged: Path,
    heldout: TextSource,
    max_tokens: int,
    context: int,
    stop_prompt: str | None,
    out: Path,
) -> MergedSide:
    """The merged model's side of a GGUF reference, in transformers, in a child (the one
    task here that is not llama.cpp: it keeps torch out of the quantize process;
    quantize/measure/reference.py `merged_side`)."""
    args: MergedSideArgs = {
        "merged": str(merged),
        "heldout_name": heldout.name,
        "heldout_text": heldout.text,
        "max_tokens": max_tokens,
        "context": context,
        "stop_prompt": stop_prompt,
        "out": str(out),
    }
    with _job("merged_side", args, "transformers on the merged model", out) as (result, _):
        return cast("MergedSide", result)


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
    """A llama_cpp.Llama with logits for every position (verbose in a child: its log is the
    child's log, whose tail explains a crash). Flash attention is on, as llama.cpp's own tools
    resolve their default (`auto`) on a CPU: the same kernels as llama-perplexity, and ~10%
    faster at 512 tokens of context (llama-cpp-python's default is off)."""
    from llama_cpp import Llama

    extra.setdefault("flash_attn", True)
    n = max(n_ctx, 64)
    return Llama(
        model_path=path,
        n_ctx=n,
        n_batch=n,
        n_ubatch=n,
        logits_all=True,
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
    from llama_cpp import Llama

    llm = Llama(model_path=args["path"], vocab_only=True, verbose=True)
    try:
        probes = {k: (t, s) for k, (t, s) in args["probes"].items()}
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
    llm = open_llama(args["path"], max((len(c) for c in chunks), default=1), args["threads"])
    files = []
    try:
        for i, ids in enumerate(chunks):
            print(f"medrelease: logits of chunk {i} ({len(ids)} tokens)", file=sys.stderr)
            llm.reset()  # a fresh KV state for every chunk
            llm.eval(ids)
            name = f"logits-{i:05d}.npy"
            rows = slice(0, len(ids)) if first is None else slice(first, len(ids) - 1)
            np.save(job / name, np.asarray(llm.scores[rows, :], dtype=np.float32))
            files.append(name)
    finally:
        llm.close()
    return {"files": files}


def _scored_rows(
    path: str, chunks: list[list[int]], first: int, threads: int
) -> Iterator[tuple[int, Any]]:
    """Each chunk's scored rows (first .. len-2) from a fresh KV state, as llama-perplexity
    evaluates them."""
    import numpy as np

    llm = open_llama(path, max(len(c) for c in chunks), threads)
    try:
        for i, ids in enumerate(chunks):
            print(f"medrelease: logits of chunk {i} ({len(ids)} tokens)", file=sys.stderr)
            llm.reset()
            llm.eval(ids)
            yield i, np.asarray(llm.scores[first : len(ids) - 1, :], dtype=np.float32)
    finally:
        llm.close()


def _task_reference(args: ReferenceArgs, job: Path) -> Referenced:
    import numpy as np

    from medrelease.quantize.measure.stats import logsumexp_rows

    out, n = Path(args["out"]), 0
    for i, rows in _scored_rows(args["path"], args["chunks"], args["first"], args["threads"]):
        for name, arr in (
            (f"logits-{i:04d}.npy", rows),
            (f"lse-{i:04d}.npy", logsumexp_rows(rows)),
        ):
            tmp = out / f".{name}.part"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, out / name)
        n += 1
    return {"chunks": n}


def _task_compare(args: CompareArgs, job: Path) -> Compared:
    import numpy as np

    from medrelease.quantize.measure.stats import TokenStats, token_stats

    ref = Path(args["reference"])
    meta = json.loads((ref / "heldout.json").read_text(encoding="utf-8"))
    chunks, first = meta["chunks"], int(meta["first"])
    parts = []
    for i, rows in _scored_rows(args["path"], chunks, first, args["threads"]):
        logits = np.load(ref / f"logits-{i:04d}.npy", mmap_mode="r")
        lse = np.load(ref / f"lse-{i:04d}.npy", mmap_mode="r")
        parts.append(token_stats(logits, lse, rows, np.asarray(chunks[i][first + 1 :])))
        del logits, lse, rows
    TokenStats.concat(parts).save(job / "stats.npz")
    return {"stats": "stats.npz"}


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


def _task_contents(args: ContentsArgs, job: Path) -> dict[str, dict[str, Any]]:
    from medrelease.quantize.gguf.contents import check_gguf_files
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    facts = TokenizerFacts.load(Path(args["facts"]))
    files = [Path(f) for f in args["files"]]
    return check_gguf_files(files, Path(args["merged"]), args["quant_type"], facts)


def _task_merged_side(args: MergedSideArgs, job: Path) -> MergedSide:
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
    "contents": _task_contents,
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
