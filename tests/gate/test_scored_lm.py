"""The gate's hf model (ScoredHFLM) computes the LM head only at scored positions and gives
lm-eval's stock hf numbers: per request to 1e-6, and the metrics of a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # lm-eval's hf module takes seconds to import

# contexts of very different lengths (one batch pads a lot), multi-token continuations, and
# one-token continuations sharing a context (lm-eval's logits cache serves those)
CONTEXTS = [
    "Question: Which organ pumps blood?\nAnswer:",
    "The patient, a 54-year-old man with a long history of smoking and hypertension, "
    "presents with crushing chest pain radiating to the left arm. The most likely diagnosis is",
    "Hi",
    "Insulin is made in the",
]
CONTINUATIONS = [" heart", " liver", " acute myocardial infarction", " A", " B", " pancreas"]


def _model(tmp_path: Path, arch: str) -> Path:
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path / arch, TinySpec(arch=arch, seed=3))


def _requests() -> list[Any]:
    from lm_eval.api.instance import Instance

    pairs = [(c, x) for c in CONTEXTS for x in CONTINUATIONS]
    return [
        Instance("loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)
    ]


@pytest.mark.parametrize(("arch", "batch_size"), [("llama", 3), ("qwen3", 8), ("qwen3", 1)])
def test_loglikelihoods_equal_stock_hf(tmp_path: Path, arch: str, batch_size: int) -> None:
    from lm_eval.models.huggingface import HFLM

    from medrelease.gate.scored_lm import ScoredHFLM

    folder = _model(tmp_path, arch)
    args = {"pretrained": str(folder), "dtype": "float32"}
    extra = {"batch_size": batch_size, "device": "cpu"}
    stock = HFLM.create_from_arg_obj(args, extra).loglikelihood(_requests())
    scored_lm = ScoredHFLM.create_from_arg_obj(args, extra)
    heads: list[int] = []  # positions the LM head saw per call
    hook = scored_lm.model.lm_head.register_forward_hook(
        lambda mod, inp, out: heads.append(inp[0].shape[1])
    )
    scored = scored_lm.loglikelihood(_requests())
    hook.remove()
    assert len(scored) == len(stock) == len(CONTEXTS) * len(CONTINUATIONS)
    for (lp, greedy), (lp0, greedy0) in zip(scored, stock, strict=True):
        assert lp == pytest.approx(lp0, abs=1e-6, rel=1e-6)
        assert greedy == greedy0
    # the head ran on the scored positions only: at most the continuation tokens of a batch,
    # never the whole padded length (as the stock backend does)
    longest = max(len(scored_lm.tok_encode(c + x)) for c in CONTEXTS for x in CONTINUATIONS)
    cont = max(len(scored_lm.tok_encode(x)) for x in CONTINUATIONS)
    assert heads and max(heads) <= batch_size * (cont + 1) and max(heads) < longest - 1


def test_task_metrics_equal_stock_hf(tmp_path: Path) -> None:
    """One multiple-choice task through simple_evaluate: every metric identical."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from gate.gatehelpers import write_demo_task
    from medrelease.gate.scored_lm import ScoredHFLM

    folder = _model(tmp_path, "qwen3")
    write_demo_task(tmp_path / "tasks")
    tm = TaskManager(include_path=[str(tmp_path / "tasks")], include_defaults=False)
    args = {"pretrained": str(folder), "dtype": "float32"}
    extra = {"batch_size": 4, "device": "cpu"}
    results = []
    for lm in (ScoredHFLM.create_from_arg_obj(args, extra), "hf"):
        out = lm_eval.simple_evaluate(
            model=lm,
            model_args=None if not isinstance(lm, str) else f"pretrained={folder},dtype=float32",
            tasks=["demo_mcq"],
            task_manager=tm,
            batch_size=4,
            device="cpu",
            num_fewshot=2,
        )
        assert out is not None
        results.append(out["results"]["demo_mcq"])
    scored, stock = results
    compared = [k for k, v in stock.items() if isinstance(v, float)]
    assert {"acc,none", "acc_norm,none", "acc_stderr,none"} <= set(compared)
    for key in compared:
        assert scored[key] == pytest.approx(stock[key], abs=1e-6), key


def test_scored_positions_union() -> None:
    from medrelease.gate.scored_lm import scored_positions

    keep, column = scored_positions([(5, 7), (6, 9), (2, 3)])
    assert keep == [2, 5, 6, 7, 8]
    assert [column[p] for p in (6, 7, 8)] == [2, 3, 4]
