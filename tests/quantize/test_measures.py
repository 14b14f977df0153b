"""Quant quality measured as llama-perplexity --kl-divergence does: chunking, KLD, limits, dtype.

The KLD, top-1 and PPL figures are checked against an independent computation (torch's
kl_div / log_softmax on the same rows), not against the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medrelease.core import compute_dtype as cd
from medrelease.quantize.config import ChecksConfig, QuantizeConfig
from medrelease.quantize.gguf.quant_types import TYPES, gguf_type
from medrelease.quantize.measure.judge import judge_logits, merged_limits
from medrelease.quantize.measure.limits import Thresholds
from medrelease.quantize.measure.logits import (
    bos_added,
    chunk_context,
    held_out_chunks,
    logit_measures,
    reference_from_logits,
)
from medrelease.quantize.texts import load_text

# ---------- chunking ----------


def test_chunks_like_llama_perplexity():
    ids = list(range(100, 5100))
    held = held_out_chunks(ids, 512, 2048, bos_id=1)
    # llama-perplexity scores positions n_ctx/2 .. n_ctx-2 of each chunk: 255 per 512 tokens
    assert held.first == 256
    assert len(held.chunks) == 9 and held.n_scored == 9 * 255 >= 2048
    assert all(len(c) == 512 for c in held.chunks)
    # each chunk starts with BOS (replacing its first token), the rest is the text in order
    assert [c[0] for c in held.chunks] == [1] * 9
    assert held.chunks[1][1:] == ids[513:1024]
    assert list(held) == [t for c in held.chunks for t in c]


def test_chunks_stop_when_enough_are_scored_or_text_runs_out():
    assert len(held_out_chunks(list(range(5000)), 512, 300).chunks) == 2
    short = held_out_chunks(list(range(1200)), 512, 2048)
    assert len(short.chunks) == 2 and short.n_scored == 510  # what the text allows
    one = held_out_chunks(list(range(100)), 512, 2048)  # shorter than a chunk: one chunk
    assert len(one.chunks) == 1 and one.first == 50 and one.n_scored == 49
    with pytest.raises(ValueError, match="fewer than 8 tokens"):
        held_out_chunks([1, 2, 3], 512, 2048)


def test_chunk_size_is_capped_by_the_model_positions():
    assert chunk_context({"max_position_embeddings": 256}, 512) == 256
    assert chunk_context({"max_position_embeddings": 32768}, 512) == 512
    assert chunk_context({"text_config": {"max_position_embeddings": 128}}, 512) == 128
    assert chunk_context({}, 512) == 512


def test_bos_only_when_the_tokenizer_adds_it():
    class Tok:
        bos_token_id = 1

    assert bos_added(Tok(), [1, 5, 6]) == 1
    assert bos_added(Tok(), [5, 6]) is None
    Tok.bos_token_id = None  # type: ignore[assignment]
    assert bos_added(Tok(), [1, 5]) is None


def test_default_heldout_text_gives_2048_scored_tokens():
    """The shipped text must fill the default with a large-vocabulary tokenizer; ~1.3 tokens
    per word is what byte-level BPEs with 50k-152k vocabularies give on English prose."""
    text = load_text("heldout", "default", Path(".")).text
    assert ChecksConfig().max_tokens >= 2048
    assert len(text.split()) * 1.05 >= 9 * 512, "held-out text too short for 9 chunks"


# ---------- measures ----------


def _held(n_tokens: int = 1200, context: int = 64, vocab: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, n_tokens).tolist()
    return held_out_chunks(ids, context, 10_000), rng


def _independent(ref_rows, got_rows, targets):
    """KLD / top-1 / nll by torch, row by row (float64)."""
    import torch
    import torch.nn.functional as F

    r = torch.tensor(ref_rows, dtype=torch.float64)
    q = torch.tensor(got_rows, dtype=torch.float64)
    lr, lq = F.log_softmax(r, -1), F.log_softmax(q, -1)
    kld = F.kl_div(lq, lr, reduction="none", log_target=True).sum(-1).numpy()
    t = torch.tensor(targets)
    nll_r = -lr[torch.arange(len(t)), t].numpy()
    nll_q = -lq[torch.arange(len(t)), t].numpy()
    same = (r.argmax(-1) == q.argmax(-1)).numpy()
    return kld, nll_r, nll_q, same


def test_measures_match_an_independent_computation():
    held, rng = _held()
    vocab = 50
    full = [rng.standard_normal((len(c), vocab)).astype(np.float32) * 4 for c in held.chunks]
    noisy = [f + rng.standard_normal(f.shape).astype(np.float32) * 0.5 for f in full]
    m = logit_measures(reference_from_logits(held, full), noisy)
    rows = [held.scored_rows(c) for c in held.chunks]
    ref_rows = np.concatenate([f[s] for f, s in zip(full, rows, strict=True)])
    got_rows = np.concatenate([f[s] for f, s in zip(noisy, rows, strict=True)])
    targets = np.concatenate([c[held.first + 1 :] for c in held.chunks])
    kld, nll_r, nll_q, same = _independent(ref_rows, got_rows, targets)
    assert m["tokens"] == len(kld) == held.n_scored
    assert m["kld_mean"] == pytest.approx(kld.mean(), rel=1e-6)
    # llama.cpp's percentile: linear interpolation at p * (n - 1) of the sorted values
    srt = np.sort(kld)
    pos = 0.99 * (len(srt) - 1)
    lo = int(pos)
    p99 = srt[lo] + (pos - lo) * (srt[lo + 1] - srt[lo])
    assert m["kld_p99"] == pytest.approx(p99, rel=1e-6)
    assert m["kld_max"] == pytest.approx(kld.max(), rel=1e-6)
    assert m["top1_agreement"] == pytest.approx(same.mean(), abs=1e-6)
    assert m["ppl_ratio"] == pytest.approx(math.exp(nll_q.mean() - nll_r.mean()), rel=1e-6)
    assert m["ppl_merged"] == pytest.approx(math.exp(nll_r.mean()), rel=1e-6)
    assert 0 < m["kld_mean"] < m["kld_p99"] <= m["kld_max"]


def test_identical_logits_and_a_shifted_scale_have_zero_kld():
    """A constant added to every logit of a row changes no probability: KLD 0, same top-1,
    ppl ratio 1 - while the absolute logit difference (the old float check) is 3.0."""
    held, rng = _held()
    full = [rng.standard_normal((len(c), 50)).astype(np.float32) for c in held.chunks]
    ref = reference_from_logits(held, full)
    same = logit_measures(ref, full)
    assert (same["kld_mean"], same["top1_agreement"], same["ppl_ratio"]) == (0.0, 1.0, 1.0)
    shifted = logit_measures(ref, [f + 3.0 for f in full])
    assert shifted["kld_mean"] == pytest.approx(0.0, abs=1e-9)
    assert shifted["ppl_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert shifted["max_abs_logit_diff"] == pytest.approx(3.0, abs=1e-5)
    assert judge_logits(shifted, gguf_type("F32").limits)["ok"]


def test_only_scored_rows_or_all_rows_give_the_same_answer():
    held, rng = _held()
    full = [rng.standard_normal((len(c), 50)).astype(np.float32) for c in held.chunks]
    other = [f + rng.standard_normal(f.shape).astype(np.float32) * 0.3 for f in full]
    ref = reference_from_logits(held, full)
    scored_only = [o[held.scored_rows(c)] for o, c in zip(other, held.chunks, strict=True)]
    assert logit_measures(ref, other) == logit_measures(ref, scored_only)
    # the reference keeps only the scored rows, in float32: one copy, nothing more
    assert all(r.dtype == np.float32 for r in ref.logits)
    assert ref.nbytes == held.n_scored * 50 * 4


def test_a_different_vocab_size_is_compared_on_the_shared_part():
    held, rng = _held()
    full = [rng.standard_normal((len(c), 50)).astype(np.float32) for c in held.chunks]
    padded = [np.concatenate([f, np.full((len(f), 14), -1e4, np.float32)], 1) for f in full]
    m = logit_measures(reference_from_logits(held, full), padded)  # GGUF pads its vocab
    assert m["kld_mean"] == pytest.approx(0.0, abs=1e-9) and m["top1_agreement"] == 1.0


def test_one_pass_over_concatenated_ids_is_refused():
    held, rng = _held()
    full = [rng.standard_normal((len(c), 50)).astype(np.float32) for c in held.chunks]
    with pytest.raises(TypeError, match="per-chunk logits"):
        logit_measures(reference_from_logits(held, full), np.concatenate(full))


def test_an_unrelated_model_fails_every_default():
    held, rng = _held(vocab=200)
    a = [rng.standard_normal((len(c), 200)).astype(np.float32) * 4 for c in held.chunks]
    b = [rng.standard_normal((len(c), 200)).astype(np.float32) * 4 for c in held.chunks]
    m = logit_measures(reference_from_logits(held, a), b)
    assert m["kld_mean"] > 1.0
    for name in ("F32", "Q8_0", "Q4_K_M", "Q2_K"):
        verdict = judge_logits(m, gguf_type(name).limits)
        assert not verdict["ok"] and verdict["metric"] == "kld_mean", name


# ---------- limits ----------


def test_judge_names_kld_first_and_reports_every_failure():
    measures = {"kld_mean": 0.3, "kld_p99": 2.0, "ppl_ratio": 1.05, "top1_agreement": 0.9}
    verdict = judge_logits(measures, Thresholds(max_kld_mean=0.1, max_ppl_ratio=1.1))
    assert not verdict["ok"]
    assert (verdict["metric"], verdict["value"], verdict["threshold"]) == ("kld_mean", 0.3, 0.1)
    ok = judge_logits(measures, Thresholds(max_kld_mean=0.5, max_kld_p99=3.0))
    assert ok["ok"] and ok["metric"] == "kld_mean" and "KLD mean 0.3" in ok["detail"]
    # a pass is headlined by the PPL ratio when it is limited (the manifest contract, cards)
    ok = judge_logits(measures, Thresholds(max_kld_mean=0.5, max_ppl_ratio=1.1))
    assert (ok["metric"], ok["value"], ok["threshold"]) == ("ppl_ratio", 1.05, 1.1)
    both = judge_logits(measures, Thresholds(max_kld_p99=1.0, min_top1_agreement=0.95))
    assert "kld_p99 2 not <= 1" in both["detail"] and "top1_agreement 0.9" in both["detail"]


def test_old_limit_keys_still_work_and_recipes_override_per_key():
    limits = merged_limits(gguf_type("Q8_0").limits, Thresholds(max_kld_mean=0.5))
    assert limits.max_kld_mean == 0.5
    assert limits.max_kld_p99 == gguf_type("Q8_0").limits.max_kld_p99  # untouched defaults remain
    legacy = QuantizeConfig.model_validate(
        {"gguf": {"types": ["F32"], "thresholds": {"F32": {"max_abs_logit_diff": 0.05}}}}
    )
    assert legacy.gguf is not None
    assert legacy.gguf.thresholds["F32"].max_abs_logit_diff == 0.05
    m = {"kld_mean": 0.0, "ppl_ratio": 1.0, "top1_agreement": 1.0, "max_abs_logit_diff": 0.1}
    assert not judge_logits(m, legacy.gguf.thresholds["F32"])["ok"]


def test_every_type_has_ordered_limits():
    """Fewer bits never get a tighter limit (floats aside): a sanity net for the table."""
    for t in TYPES.values():
        assert t.limits.max_kld_mean < t.limits.max_kld_p99, t.name
        assert t.limits.max_abs_logit_diff is None, t.name  # no default judges absolute logits
    q = sorted((t for t in TYPES.values() if not t.is_float), key=lambda t: -t.bpw)
    by_bits = [
        t.limits.max_kld_mean
        for t in q
        if t.name in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
    ]
    assert by_bits == sorted(by_bits)
    assert gguf_type("F32").limits.max_kld_mean <= gguf_type("Q8_0").limits.max_kld_mean


def test_checks_defaults():
    c = ChecksConfig()
    assert c.max_tokens == 2048 and c.context == 512


# ---------- compute dtype ----------

GIB = 2**30


def test_float32_on_a_slow_bf16_cpu_when_it_fits():
    small = cd.choose_compute_dtype("bfloat16", 135_000_000, available=20 * GIB, fast_half=False)
    assert small.dtype == "float32" and "< 50%" in small.reason


def test_own_dtype_when_float32_would_not_fit():
    big = cd.choose_compute_dtype("bfloat16", 7_600_000_000, available=22 * GIB, fast_half=False)
    assert big.dtype == "bfloat16" and "would not fit" in big.reason


def test_float32_layer_by_layer_when_only_the_half_weights_fit():
    """A 7B bf16 model on this 24 GiB machine: float32 numbers at bf16 memory, when the caller
    can upcast module by module; the bf16 weights themselves must still fit."""
    big = cd.choose_compute_dtype(
        "bfloat16", 7_600_000_000, available=22 * GIB, fast_half=False, per_layer=True
    )
    assert big.dtype == "float32" and big.per_layer and "layer by layer" in big.reason
    assert big.record()["per_layer"] is True
    huge = cd.choose_compute_dtype(
        "bfloat16", 14_000_000_000, available=22 * GIB, fast_half=False, per_layer=True
    )
    assert huge.dtype == "bfloat16" and not huge.per_layer and "per_layer" not in huge.record()
    fits = cd.choose_compute_dtype("bfloat16", 10**8, available=22 * GIB, fast_half=False)
    assert not fits.per_layer  # a whole float32 copy fits: no hooks needed


def test_own_dtype_on_fast_cpus_accelerators_and_float32_models():
    assert cd.choose_compute_dtype("bfloat16", 1000, available=GIB, fast_half=True).dtype == (
        "bfloat16"
    )
    assert cd.choose_compute_dtype("bfloat16", 1000, device="cuda").dtype == "bfloat16"
    assert cd.choose_compute_dtype("float32", 10**10, available=GIB).dtype == "float32"


def test_fast_half_detection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(cd.ENV_OVERRIDE, raising=False)
    # AVX512-BF16 alone is not enough: the 2.7x slowdown was measured on such a CPU
    assert not cd.cpu_fast_half("bfloat16", {"avx2", "avx512f", "avx512_bf16"})
    assert cd.cpu_fast_half("bfloat16", {"avx512_bf16", "amx_bf16", "amx_tile"})
    assert not cd.cpu_fast_half("float16", {"amx_bf16"})
    monkeypatch.setenv(cd.ENV_OVERRIDE, "1")
    assert cd.cpu_fast_half("bfloat16", set())


def test_weights_info_reads_headers_only(tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    save_file(
        {"a": torch.zeros(4, 8, dtype=torch.bfloat16), "b": torch.zeros(8, dtype=torch.float32)},
        str(tmp_path / "model.safetensors"),
    )
    info = cd.weights_info(tmp_path)
    assert info == cd.WeightsInfo(40, "bfloat16")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    assert cd.weights_info(tmp_path) == cd.WeightsInfo(0, "float16")


def test_no_torch_at_import():
    import subprocess
    import sys

    code = "import sys, medrelease.core.compute_dtype; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
