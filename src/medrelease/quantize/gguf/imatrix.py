"""Importance-matrix GGUF quants through llama.cpp's `llama-imatrix` and `llama-quantize`.

`llama-imatrix` runs the high-precision GGUF over calibration text and records, per weight
column, how much the activations use it; `llama-quantize --imatrix` then spends the quant's
precision where it matters. Both are the binaries `medrelease setup` builds (llama_tools.py),
because llama-cpp-python cannot pass an importance matrix to `llama_model_quantize`.

Both tools write the file names they are given into the GGUF metadata: `imatrix.datasets` (the
calibration text) in the matrix, `quantize.imatrix.file` and `quantize.imatrix.dataset` in each
quant. So they run in a working folder with stable relative names (`dataset_name`, the matrix's
published file name): the same inputs then give the same bytes wherever and whenever the
release is built, and no published file names a folder of the machine that built it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medrelease.core.atomic import TMP_PREFIX
from medrelease.core.errors import EnvironmentProblem, InputError
from medrelease.quantize.gguf.child import (
    LlamaChildError,
    child_env,
    describe_exit,
    gguf_count_tokens,
    log_tail,
)
from medrelease.quantize.gguf.quant_types import GgufType
from medrelease.quantize.gguf.tools import build_info, tool_path
from medrelease.quantize.texts import DEFAULT
from medrelease.records.quantize import ImatrixRecord

# tokens per chunk: small, so the short shipped calibration text still gives several chunks
CONTEXT = 128
CHUNKS_RE = re.compile(r"computing over (\d+) chunks")


@dataclass
class Imatrix:
    path: Path
    calibration: str  # "default" or the recipe-relative file
    calibration_sha256: str
    chunks: int

    def record(self, rel_path: str, sha256: str) -> ImatrixRecord:
        return {
            "calibration": self.calibration,
            "calibration_sha256": self.calibration_sha256,
            "file": rel_path,
            "sha256": sha256,
            "chunks": self.chunks,
            "context": CONTEXT,
            "tool": f"llama-imatrix {build_info()}",
        }


def dataset_name(calibration: str) -> str:
    """The calibration text's name as llama.cpp records it: `calibration/default.txt` for the
    shipped text, else the recipe's relative name as declared; a name that would say where
    files live on this machine (absolute, `~`, `..`) keeps only its file name."""
    if calibration == DEFAULT:
        return "calibration/default.txt"
    path = PurePosixPath(calibration.replace("\\", "/"))
    parts = path.parts
    local = path.is_absolute() or ".." in parts or not parts
    if local or parts[0].startswith("~") or parts[0].endswith(":"):  # ':' a Windows drive
        return path.name or "calibration.txt"
    return "/".join(parts)  # PurePosixPath dropped any './' and '//'


def _run(cmd: list[str], what: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a llama.cpp tool in `cwd` (the relative names it is given end up in the GGUF
    metadata) without ggml's gdb backtrace; a signal raises LlamaChildError."""
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    if proc.returncode < 0:
        if proc.returncode == -2:  # Ctrl-C reached the tool too: an interruption, not a crash
            raise KeyboardInterrupt
        log = proc.stderr + proc.stdout
        raise LlamaChildError(describe_exit(proc.returncode), log_tail(log), what=what)
    return proc


def _last_lines(log: str, n: int = 8) -> str:
    return "\n".join(ln for ln in log.strip().splitlines()[-n:])


def count_tokens(model: Path, text: str) -> int:
    """Tokens llama.cpp makes of `text` with `model`'s vocabulary (in a child process)."""
    return gguf_count_tokens(model, text)


def _too_short(calibration: str, n_tokens: int | None = None) -> InputError:
    has = f" (it has {n_tokens})" if n_tokens is not None else ""
    return InputError(
        f"the imatrix calibration text {calibration!r} is too short: llama-imatrix needs "
        f"at least {2 * CONTEXT} tokens{has}",
        hint="use a longer calibration text (or 'default')",
    )


def compute_imatrix(
    model: Path,
    text: str,
    out: Path,
    *,
    calibration: str,
    calibration_sha256: str,
    threads: int,
) -> Imatrix:
    """`llama-imatrix -m model -f <dataset_name> -o <out's name>` with a small context, run in
    a working folder next to `out` (so only those names reach the metadata); `out` is GGUF."""
    # refuse a text llama-imatrix would refuse, before running it: the tool says why through
    # an asynchronous logger that can lose the message when it exits at once (seen in CI)
    n_tokens = count_tokens(model, text)
    if n_tokens < 2 * CONTEXT:
        raise _too_short(calibration, n_tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}imatrix-", dir=out.parent) as tmp:
        work = Path(tmp)
        name = dataset_name(calibration)
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
        produced = work / out.name
        # absolute model and tool paths: the working folder is not ours (they are not recorded)
        cmd = [str(tool_path("llama-imatrix").absolute()), "-m", str(model.absolute())]
        cmd += ["-f", name, "-o", out.name, "-c", str(CONTEXT), "-b", str(CONTEXT)]
        cmd += ["-ub", str(CONTEXT), "-t", str(threads), "--no-ppl"]
        proc = _run(cmd, "llama-imatrix", cwd=work)
        log = proc.stderr + proc.stdout
        if "you need at least" in log:
            raise _too_short(calibration)
        if proc.returncode != 0 or not produced.is_file():
            raise EnvironmentProblem(
                f"llama-imatrix failed (exit {proc.returncode}):\n{_last_lines(log)}",
                hint="re-run `medrelease setup` if the tools are broken; --debug shows more",
            )
        os.replace(produced, out)  # same folder's filesystem: atomic
    return Imatrix(out, calibration, calibration_sha256, _chunk_count(out, log))


def _chunk_count(imatrix: Path, log: str) -> int:
    """The chunk count the imatrix file records (its log line can be lost, see above)."""
    from gguf import GGUFReader

    field = GGUFReader(imatrix).fields.get("imatrix.chunk_count")
    if field is not None:
        return int(field.contents())
    m = CHUNKS_RE.search(log)
    return int(m.group(1)) if m else 0


def quantize_with_imatrix(
    source: list[Path], out_dir: Path, stem: str, qtype: GgufType, imatrix: Path, threads: int
) -> list[Path]:
    """`llama-quantize --imatrix` (the binary), keeping the source's shards like `quantize`.

    Run in the matrix's folder and given its bare file name, which the quant records as
    `quantize.imatrix.file` (the name it is published under, not a path of this machine)."""
    from medrelease.quantize.gguf.files import gguf_files

    split = len(source) > 1
    # with --keep-split llama.cpp appends -0000i-of-0000n.gguf to the name it is given
    target = out_dir / (stem if split else f"{stem}.gguf")
    cmd = [str(tool_path("llama-quantize").absolute()), "--imatrix", imatrix.name]
    if split:
        cmd.append("--keep-split")
    # absolute: the tool runs in the matrix's folder (these paths are not recorded)
    cmd += [str(source[0].absolute()), str(target.absolute()), qtype.name, str(threads)]
    try:
        proc = _run(cmd, f"llama-quantize ({qtype.name})", cwd=imatrix.absolute().parent)
    except LlamaChildError:
        for f in gguf_files(out_dir, stem):  # a half-written quant is of no use
            f.unlink(missing_ok=True)
        raise
    files = gguf_files(out_dir, stem)
    if proc.returncode != 0 or not files:
        for f in files:
            f.unlink(missing_ok=True)
        log = proc.stderr + proc.stdout
        if "No space left" in log:
            raise EnvironmentProblem(f"the disk filled up while writing {qtype.name}")
        errors = [ln.strip() for ln in log.splitlines() if "error" in ln.lower()]
        # a refusal for this type (the release goes on with the others), not a crash
        raise LlamaChildError(
            proc.returncode,
            log_tail(log),
            what=f"llama-quantize ({qtype.name}, with the importance matrix)",
            message=errors[-1] if errors else f"exit {proc.returncode}: {_last_lines(log, 3)}",
        )
    return files
