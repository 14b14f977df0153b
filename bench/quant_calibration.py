"""Measure what every GGUF type does to real models: the data behind the default quant limits.

    .venv/bin/python bench/quant_calibration.py MODEL_DIR [MODEL_DIR ...] \\
        --wrong reversed --out quant-calibration.json

For each model folder (a Hugging Face checkpoint): the merged-model reference exactly as
`medrelease quantize` computes it (the shipped held-out text, 512-token chunks, 2,048 scored
tokens), once in float32 and once in the checkpoint's own dtype (what the product uses when a
float32 copy would not fit); then llama.cpp's converter (F32/F16/BF16) and quantizer (every
other type, from the F16 intermediate as the product does) and the same measures on each GGUF
(quantize/measure/logits.py: KLD mean and p99 as llama-perplexity reports them, top-1 agreement, PPL
ratio). `--wrong FOLDER`: a GGUF of another model with the same vocabulary, scored against the
first model's reference (what a mix-up would look like). Prints a markdown table (the one in
docs/quant-checks.md) and writes every figure as JSON. The default limits are applied to each
row so the table also says what would be accepted.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FLOATS = ("F32", "F16", "BF16")
DEFAULT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")


def held_out(model_dir: Path, max_tokens: int, context: int) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from medrelease.quantize.measure.logits import (
        bos_added,
        chunk_context,
        held_out_chunks,
        held_out_ids,
    )
    from medrelease.quantize.texts import load_text

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    text = load_text("heldout", "default", model_dir).text
    ids = held_out_ids(tok, text)
    config = json.loads((model_dir / "config.json").read_text())
    chunks = held_out_chunks(ids, chunk_context(config, context), max_tokens, bos_added(tok, ids))
    return tok, chunks


def hf_reference(
    model_dir: Path, chunks: Any, dtype: str, cache: Path | None = None
) -> tuple[Any, float]:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from medrelease.quantize.measure.logits import Reference, hf_logits, reference_from_logits

    t0 = time.perf_counter()
    saved = cache / f"{model_dir.name}-{dtype}-{len(chunks)}.npz" if cache else None
    if saved is not None and saved.is_file():
        data = np.load(saved)
        n = len(chunks.chunks)
        logits = [data[f"l{i}"] for i in range(n)]
        lse = [data[f"s{i}"] for i in range(n)]
        return Reference(chunks, logits, lse, dtype), time.perf_counter() - t0
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    model.eval()
    logits = hf_logits(model, chunks)
    del model
    gc.collect()
    ref = reference_from_logits(chunks, logits, dtype)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"l{i}": a for i, a in enumerate(ref.logits)}
        arrays.update({f"s{i}": a for i, a in enumerate(ref.lse)})
        np.savez(saved, **arrays)  # type: ignore[arg-type]
    return ref, time.perf_counter() - t0


def gguf_chunk_logits(path: Path, chunks: Any, threads: int) -> list[Any]:
    """Per-chunk logits from llama.cpp, each chunk from a fresh state (in this process)."""
    from medrelease.quantize.measure.logits import gguf_logits
    from medrelease.testing.llama import open_gguf

    llm = open_gguf(path, len(chunks.chunks[0]), threads)
    try:
        return list(gguf_logits(llm, chunks))
    finally:
        llm.close()


def gguf_f16_reference(f16: Path, chunks: Any, work: Path, threads: int) -> tuple[Any, Path]:
    """The product's GGUF reference of `f16` on `chunks`, saved in a folder (and that folder)."""
    from medrelease.quantize.gguf.child import gguf_reference_logits
    from medrelease.quantize.measure.reference import open_reference, write_meta

    folder = work / "reference-gguf-f16"
    folder.mkdir(exist_ok=True)
    gguf_reference_logits(f16, folder, chunks.chunks, chunks.first, threads)
    write_meta(folder, chunks, "gguf-f16", "llama.cpp on the F16 GGUF intermediate")
    return open_reference(folder), folder


def make_gguf(model_dir: Path, work: Path, qtype: str, threads: int) -> Path:
    from medrelease.quantize.gguf.build import convert, quantize
    from medrelease.quantize.gguf.quant_types import gguf_type

    if qtype in FLOATS:
        return convert(model_dir, work, qtype, qtype.lower(), None)[0]
    inter = work / "F16.gguf"
    if not inter.is_file():
        convert(model_dir, work, "F16", "f16", None)
    return quantize([inter], work, qtype, gguf_type(qtype), threads)[0]


def judge(qtype: str, measures: dict[str, Any]) -> bool:
    from medrelease.quantize.gguf.quant_types import gguf_type
    from medrelease.quantize.measure.judge import judge_logits

    return bool(judge_logits(measures, gguf_type(qtype).limits)["ok"])


def row(model: str, label: str, m: dict[str, Any], accepted: bool | None) -> dict[str, Any]:
    keep = ("kld_mean", "kld_p99", "kld_median", "kld_max", "top1_agreement", "ppl_ratio",
            "delta_p_rms", "max_abs_logit_diff", "tokens", "ppl_merged", "ppl_quant")  # fmt: skip
    return {"model": model, "type": label, "accepted": accepted, **{k: m[k] for k in keep}}


def reversed_layers(model_dir: Path, out: Path) -> Path:
    """The same checkpoint with its decoder layers in reverse order: a model with the right
    tokenizer and shapes but the wrong function (what a mixed-up or broken merge looks like)."""
    import re

    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    n = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    for f in model_dir.iterdir():
        if f.suffix == ".safetensors":
            tensors = load_file(str(f))
            renamed = {
                re.sub(r"layers\.(\d+)\.", lambda m: f"layers.{n - 1 - int(m.group(1))}.", k): v
                for k, v in tensors.items()
            }
            save_file(renamed, str(out / f.name), metadata={"format": "pt"})
        elif f.is_file():
            shutil.copy(f, out / f.name)
    return out


def calibrate(
    model_dir: Path, args: argparse.Namespace, wrong: Path | None
) -> list[dict[str, Any]]:
    from medrelease.core.compute_dtype import weights_info
    from medrelease.quantize.measure.logits import gguf_measures, logit_measures

    name = model_dir.name
    info = weights_info(model_dir)
    work = args.workdir / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _, chunks = held_out(model_dir, args.max_tokens, args.context)
    n_chunks, n_ctx = len(chunks.chunks), len(chunks.chunks[0])
    print(f"## {name}: {info.n_params / 1e6:.0f}M params, {info.dtype}, "
          f"{n_chunks} chunks x {n_ctx}, {chunks.n_scored} scored", flush=True)  # fmt: skip
    ref32, secs = hf_reference(model_dir, chunks, "float32", args.cache)
    print(f"   reference float32: {secs:.1f} s, {ref32.nbytes / 2**20:.0f} MiB", flush=True)
    rows = []
    refs = {"float32": ref32}
    if info.dtype != "float32" and not args.no_own_dtype:
        ref_own, secs = hf_reference(model_dir, chunks, info.dtype, args.cache)
        print(f"   reference {info.dtype}: {secs:.1f} s", flush=True)
        refs[info.dtype] = ref_own
        m = logit_measures(ref32, list(ref_own.logits))
        rows.append(row(name, f"HF {info.dtype} compute", m, None))
    # the product's default reference: llama.cpp on the F16 intermediate, every quant compared
    # in its llama.cpp child (quantize/measure/reference.py), exactly as `medrelease quantize`
    gguf_ref = gguf_f16_reference(
        make_gguf(model_dir, work, "F16", args.threads), chunks, work, args.threads
    )
    m = logit_measures(ref32, list(gguf_ref[0].logits))
    rows.append(
        row(name, "F16 GGUF reference vs HF float32 (the conversion check, all chunks)", m, None)
    )
    for qtype in args.types:
        t0 = time.perf_counter()
        path = make_gguf(model_dir, work, qtype, args.threads)
        got = gguf_chunk_logits(path, chunks, args.threads)
        for ref_dtype, ref in refs.items():
            m = logit_measures(ref, got)
            label = qtype if ref_dtype == "float32" else f"{qtype} (ref {ref_dtype})"
            rows.append(row(name, label, m, judge(qtype, m)))
        m = gguf_measures(path, gguf_ref[0], gguf_ref[1], args.threads)
        rows.append(row(name, f"{qtype} (ref F16 GGUF: the default)", m, judge(qtype, m)))
        del got
        gc.collect()
        print(f"   {qtype} ({time.perf_counter() - t0:.0f} s): "
              f"{json.dumps(rows[-len(refs):])}", flush=True)  # fmt: skip
        if args.out:  # every row as soon as it is measured
            args.out.write_text(json.dumps(args.done + rows, indent=1) + "\n")
        if path.name != "F16.gguf":
            path.unlink()
    if wrong is not None:
        if str(wrong) == "reversed":
            wrong = reversed_layers(model_dir, args.workdir / f"{name}-layers-reversed")
        path = make_gguf(wrong, args.workdir / f"wrong-{wrong.name}", "Q8_0", args.threads)
        got = gguf_chunk_logits(path, chunks, args.threads)
        m = logit_measures(ref32, got)
        rows.append(row(name, f"Q8_0 of {wrong.name} (wrong model)", m, judge("Q8_0", m)))
        m = gguf_measures(path, gguf_ref[0], gguf_ref[1], args.threads)
        label = f"Q8_0 of {wrong.name} (wrong model, ref F16 GGUF)"
        rows.append(row(name, label, m, judge("Q8_0", m)))
        print(f"   wrong model: {json.dumps(rows[-1])}", flush=True)
        shutil.rmtree(path.parent, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return rows


def row_order(r: dict[str, Any]) -> tuple[str, int, str]:
    """Model, then HF reference first, types in FLOATS + DEFAULT_TYPES order, wrong model last."""
    order = list(dict.fromkeys((*FLOATS, *DEFAULT_TYPES)))
    qtype = r["type"].split(" ")[0]
    reference = r["type"].startswith(("HF ", "F16 GGUF reference"))
    rank = -1 if reference else len(order) + 1
    if " of " not in r["type"] and qtype in order:
        rank = order.index(qtype)
    return (r["model"], rank, r["type"])


def rejudge(r: dict[str, Any]) -> bool | None:
    """The verdict of today's default limits on a measured row (None: not a GGUF)."""
    qtype = r["type"].split(" ")[0]
    if r["type"].startswith(("HF ", "F16 GGUF reference")):
        return None
    return judge(qtype, r)


def _num(x: float) -> str:
    return f"{x:.1e}" if 0 < x < 1e-3 else f"{x:.4f}" if x < 10 else f"{x:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | type | KLD mean | KLD p99 | top-1 | PPL ratio | max abs logit diff | "
            "default limits |\n|---|---|---:|---:|---:|---:|---:|---|")  # fmt: skip
    lines = [head]
    for r in rows:
        verdict = {True: "pass", False: "**fail**", None: "–"}[rejudge(r)]
        lines.append(
            f"| {r['model']} | {r['type']} | {_num(r['kld_mean'])} | {_num(r['kld_p99'])} | "
            f"{r['top1_agreement']:.3f} | {r['ppl_ratio']:.4f} | {r['max_abs_logit_diff']:.3f} | "
            f"{verdict} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="*", type=Path, help="Hugging Face model folders")
    p.add_argument("--types", nargs="+", default=list(DEFAULT_TYPES))
    p.add_argument(
        "--wrong",
        type=Path,
        help="a model with the same vocabulary as the first, or `reversed`: the first model "
        "with its layers in reverse order",
    )
    p.add_argument(
        "--no-own-dtype",
        action="store_true",
        help="skip the reference in the checkpoint's own dtype (half the reference time)",
    )
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/mr-quant-calibration"))
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    p.add_argument("--cache", type=Path, help="keep the references here (re-runs skip them)")
    p.add_argument(
        "--table-from", nargs="+", type=Path, help="only print the table of these JSON files"
    )
    args = p.parse_args()
    if args.table_from:
        done = [r for f in args.table_from for r in json.loads(f.read_text())]
        print(table(sorted(done, key=row_order)))
        return 0
    from medrelease.core.quiet import quiet_libraries

    quiet_libraries()
    rows: list[dict[str, Any]] = []
    args.done = rows
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, model in enumerate(args.models):
        wrong = args.wrong if i == 0 else None
        rows += calibrate(model.resolve(), args, wrong)
        print(table(rows), flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
