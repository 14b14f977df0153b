"""Items scored while lm-eval runs (medrelease.gate.live_items): the same values lm-eval logs
after the run, and a run stopped early scored its items exactly as the whole run did (the same
batches), in bfloat16 too, with fewer forward passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # lm-eval's hf module takes seconds to import


def _lm(tmp_path: Path, dtype: str) -> Any:
    from medrelease.gate.scored_lm import ScoredHFLM
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    folder = build_tiny_model(tmp_path / "llama", TinySpec(arch="llama", seed=5))
    args = {"pretrained": str(folder), "dtype": dtype}
    return ScoredHFLM.create_from_arg_obj(args, {"batch_size": 3, "device": "cpu"})


def _run(lm: Any, tmp_path: Path, samples: list[int]) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from gate.gatehelpers import write_demo_task

    write_demo_task(tmp_path / "tasks")
    tm = TaskManager(include_path=[str(tmp_path / "tasks")], include_defaults=False)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=["demo_mcq"], task_manager=tm, samples={"demo_mcq": samples}
    )
    assert out is not None
    return out


SAMPLES = [0, 2, 3, 5, 6, 8, 9, 11]  # document indices: `doc_id` must be these, not positions


def test_watched_items_equal_what_lm_eval_logs(tmp_path: Path) -> None:
    from medrelease.gate.live_items import watch_items

    lm = _lm(tmp_path, "float32")
    live: list[tuple[str, dict[str, Any]]] = []
    with watch_items(lm, lambda name, task, s: live.extend((name, x) for x in s)):
        out = _run(lm, tmp_path, SAMPLES)
    logged = {(s["doc_id"], s["filter"]): s for s in out["samples"]["demo_mcq"]}
    assert sorted(doc for doc, _ in logged) == SAMPLES
    assert len(live) == len(logged)
    for name, sample in live:
        want = logged[(sample["doc_id"], sample["filter"])]
        assert name == "demo_mcq"
        assert sample["filtered_resps"] == want["filtered_resps"]
        for metric in want["metrics"]:  # acc, acc_norm: from the task's process_results
            assert sample[metric] == want[metric], metric
    # the watch is gone afterwards: the class's methods and lm-eval's hook again
    assert "loglikelihood" not in vars(lm) and type(lm.cache_hook).__name__ == "CacheHook"


def test_a_stopped_run_scores_its_items_as_the_whole_run(tmp_path: Path) -> None:
    """bfloat16, where a different batching would move the log-likelihoods' last bits."""
    from medrelease.gate.live_items import StopEvaluation, watch_items

    lm = _lm(tmp_path, "bfloat16")
    calls: list[int] = []
    hook = lm.model.register_forward_hook(lambda *_: calls.append(1))

    whole: dict[int, Any] = {}
    with watch_items(lm, lambda n, t, s: whole.update({x["doc_id"]: x for x in s})):
        _run(lm, tmp_path, SAMPLES)
    whole_calls = len(calls)

    calls.clear()
    part: dict[int, Any] = {}

    def stop_after_three(name: str, task: Any, samples: list[dict[str, Any]]) -> None:
        part.update({x["doc_id"]: x for x in samples})
        if len(part) == 3:
            raise StopEvaluation("enough")

    with pytest.raises(StopEvaluation), watch_items(lm, stop_after_three):
        _run(lm, tmp_path, SAMPLES)
    hook.remove()

    assert len(part) == 3 and set(part) < set(whole)
    for doc, sample in part.items():  # bit for bit: the same padded batches
        assert sample["filtered_resps"] == whole[doc]["filtered_resps"]
        assert sample["acc"] == whole[doc]["acc"]
    assert 0 < len(calls) < whole_calls  # the rest of the run was never computed
