"""`quantize --executor ray`: one Ray task per GGUF type after one conversion on the driver,
the reference shared through the build folder. On a local Ray instance and on a two-node
cluster simulated on this machine (ray.cluster_utils, CPU only) the quant records equal the
local executor's, measure for measure; a worker killed mid-unit is retried; a llama.cpp abort
in a unit is still a rejected quant; an unreachable address is exit 7 with the fix."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import free_port, run_cli, two_node_ray_cluster
from medrelease.core.errors import EnvironmentProblem
from medrelease.executors.raycluster import FAULT_INJECT_KILL_FIRST_ATTEMPT
from medrelease.quantize.gguf.child import TEST_ABORT_ENV
from quantize.quanthelpers import RELEASE, quant_release, quantize_recorded

TYPES = ["Q8_0", "Q4_0"]  # two units; Q4_0's defaults accept the tiny model's quant


def _run(recipe: Path, workdir: Path, **kw: Any) -> dict[str, Any]:
    # threads=1: each unit asks Ray for 1 CPU, what one node of the test cluster has
    result = quantize_recorded(recipe, workdir, threads=1, **kw)
    return result.record


class Local:
    def __init__(self, recipe: Path, workdir: Path, record: dict[str, Any]):
        self.recipe, self.workdir, self.record = recipe, workdir, record


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Local:
    """The tiny release quantized by the local executor: what every Ray run must equal."""
    workdir = tmp_path_factory.mktemp("quant-ray")
    recipe = quant_release(workdir, tiny_llama, {"gguf": {"types": TYPES}}).recipe
    record = _run(recipe, workdir)
    assert record["executor"] == {"name": "local"}
    assert [q["type"] for q in record["quants"]] == TYPES
    assert all(q["accepted"] for q in record["quants"]), record["quants"]
    # the GGUF intermediate and its logits (the reference), then the quants
    assert list(record["timings"]["phases_s"]) == ["inputs", "reference", "gguf"]
    return Local(recipe, workdir, record)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with two_node_ray_cluster() as c:
        yield c


def _assert_same(got: Any, want: Any, where: str = "quant") -> None:
    """Equal, numbers to 1e-12 (they are computed from the same bytes: in fact identical)."""
    if isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, where
    elif isinstance(want, int | float):
        assert isinstance(got, int | float) and not isinstance(got, bool), where
        assert math.isclose(got, want, rel_tol=0, abs_tol=1e-12), (where, got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want), where  # same keys, same order
        for k in want:
            _assert_same(got[k], want[k], f"{where}.{k}")
    else:
        assert isinstance(want, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{where}[{i}]")


def _on_disk(workdir: Path, record: dict[str, Any]) -> None:
    """Every file the record names is there with its hash; no temporaries are left."""
    from medrelease.core.hashing import sha256_file_uncached

    root = workdir / RELEASE
    for q in record["quants"]:
        for rel, rec in q["files"].items():
            assert sha256_file_uncached(root / rel) == rec["sha256"], rel
    assert not list(root.rglob(".mr-tmp-*")), "temporaries left behind"


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_ray_instance_gives_the_local_records(
    local: Local, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: `quantize --executor ray` with no address starts a local Ray instance."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = run_cli(
        "quantize", local.recipe, "--workdir", local.workdir, "--force", "--threads", "1",
        "--executor", "ray", "--json",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["status"] == "done"
    record = json.loads((local.workdir / RELEASE / "manifest.json").read_text())["steps"][
        "quantize"
    ]
    assert record["executor"] == {"name": "ray", "nodes": 1}
    _assert_same(record["quants"], local.record["quants"])
    assert record["outputs"] == local.record["outputs"]
    assert record["settings"] == local.record["settings"]  # the executor is not a setting
    assert list(record["timings"]["phases_s"]) == ["inputs", "reference", "prepare", "units"]
    _on_disk(local.workdir, record)


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_two_nodes_a_killed_worker_and_an_abort(
    local: Local, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On two nodes, every unit's first worker is killed (as an OOM kill would) and retried;
    llama.cpp aborting in Q4_0's logits check rejects Q4_0, as it does in process."""
    killed = tmp_path / "killed"
    killed.mkdir()
    monkeypatch.setenv(FAULT_INJECT_KILL_FIRST_ATTEMPT, str(killed))
    monkeypatch.setenv(TEST_ABORT_ENV, "compare:Q4_0")
    record = _run(
        local.recipe, local.workdir, force=True, executor="ray", ray_address=cluster.address
    )
    assert sorted(p.name for p in killed.iterdir()) == [
        "quantize-gguf-Q4_0.killed",
        "quantize-gguf-Q8_0.killed",
    ]  # every unit really lost a worker, and came back
    assert record["executor"] == {"name": "ray", "nodes": 2}
    q8, q4 = record["quants"]
    _assert_same(q8, local.record["quants"][0])
    assert q4["accepted"] is False and q4["checks"]["logits"]["signal"] == "SIGABRT", q4
    assert "was killed by SIGABRT (llama.cpp aborted)" in q4["reason"]
    _assert_same(q4["checks"]["tokenization"], local.record["quants"][1]["checks"]["tokenization"])
    assert list(q4["files"]) == [f"quant/rejected/gguf/{RELEASE}-Q4_0.gguf"]
    _on_disk(local.workdir, record)


@pytest.mark.slow
def test_unreachable_address_is_exit_7_before_any_work(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = local.workdir / RELEASE / "manifest.json"
    before = manifest.read_bytes()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    code = run_cli(
        "quantize", local.recipe, "--workdir", local.workdir, "--force",
        "--executor", "ray", "--ray-address", address,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 7, err
    assert f"cannot reach the Ray cluster at {address}" in err, err
    assert "ray start --head" in err, err  # the fix
    assert "Traceback" not in err
    assert time.monotonic() - started < 30  # no conversion, no reference, no retry loop
    assert manifest.read_bytes() == before


def test_units_declare_threads_and_memory(tiny_llama: Path) -> None:
    from medrelease.quantize.config import QuantizeConfig
    from medrelease.quantize.gguf.files import parameter_count
    from medrelease.quantize.units import GIB, plan_units

    cfg = QuantizeConfig.model_validate({"gguf": {"types": ["Q8_0", "F16"]}, "awq": {}})
    units = plan_units(cfg, tiny_llama, 3)
    assert [u.key for u in units] == [
        "quantize-gguf-Q8_0",
        "quantize-gguf-F16",
        "quantize-awq-W4A16_ASYM",
    ]
    assert all(u.resources.num_cpus == 3 and u.resources.num_gpus == 0 for u in units)
    n = parameter_count(tiny_llama)
    assert units[0].resources.memory == int(n * 8.5 / 8) + GIB  # Q8_0: 8.5 bits per weight
    assert units[1].resources.memory == int(n * 16 / 8) + GIB
    weights = sum(p.stat().st_size for p in tiny_llama.glob("*.safetensors"))
    assert units[2].resources.memory == 3 * weights + GIB


def test_a_unit_wanting_more_cpus_than_any_node_names_threads(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medrelease.executors.raycluster import RayExecutor
    from medrelease.quantize.config import QuantizeConfig
    from medrelease.quantize.units import plan_units

    cfg = QuantizeConfig.model_validate({"gguf": {"types": ["Q8_0"]}})
    ex = RayExecutor("127.0.0.1:1")
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0, "memory": 8.0 * 2**30}}]
    monkeypatch.setattr(ex, "_alive_nodes", lambda: nodes)
    with pytest.raises(EnvironmentProblem) as info:
        ex.check_resources(plan_units(cfg, tiny_llama, 4))
    assert "gguf Q8_0: quantize + check needs 4 CPU" in str(info.value)
    assert "quantize --threads 2" in (info.value.hint or "")


def test_saved_reference_gives_the_same_measures(tmp_path: Path, tiny_llama: Path) -> None:
    """What a Ray unit memory-maps is the reference the driver computed, to the bit."""
    import numpy as np

    from medrelease.quantize.base import QuantContext
    from medrelease.quantize.measure.logits import (
        held_out_chunks,
        logit_measures,
        reference_from_logits,
    )
    from medrelease.quantize.measure.reference import load_reference, save_reference

    rng = np.random.default_rng(0)
    held = held_out_chunks(list(rng.integers(0, 100, 90)), 40, 60, bos_id=1)
    vocab = 128
    ref_logits = [rng.normal(size=(len(c), vocab)).astype(np.float32) for c in held.chunks]
    ctx = QuantContext(tiny_llama, "x", tmp_path, None, held, None, 1, 0)
    ctx.reference_logits = reference_from_logits(held, ref_logits, "float32", "why")
    save_reference(ctx, tmp_path)
    other = QuantContext(tiny_llama, "x", tmp_path, None, [], None, 1, 0)
    load_reference(other, tmp_path)
    assert other.heldout_ids == held and other.heldout_ids.chunks == held.chunks
    assert other.heldout_ids.first == held.first
    assert isinstance(other.reference_logits.logits[0], np.memmap)  # not copied into memory
    quant = [a + rng.normal(scale=0.1, size=a.shape).astype(np.float32) for a in ref_logits]
    assert logit_measures(other.reference_logits, quant) == logit_measures(
        ctx.reference_logits, quant
    )
    assert other.tokenizer is None and other.facts is None  # no facts saved: loaded on use
    assert other.tokenizer_facts().vocab and other.tokenizer is not None
    facts = other.tokenizer_facts()
    facts.save(tmp_path)  # as the merged-side child does with a GGUF reference
    third = QuantContext(tiny_llama, "x", tmp_path, None, [], None, 1, 0)
    load_reference(third, tmp_path)
    assert third.facts == facts and third.tokenizer is None  # no transformers on the worker


def test_quantize_with_the_local_executor_does_not_import_ray() -> None:
    code = (
        "import sys, medrelease.cli, medrelease.quantize.step, medrelease.quantize.units\n"
        "from medrelease.executors import make_executor\n"
        "make_executor('local').check_resources([])\n"
        "print('ray' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"


def test_recipe_key_chooses_the_executor_and_is_not_a_setting() -> None:
    from medrelease.executors import resolve_executor_name
    from medrelease.quantize.config import QuantizeConfig

    cfg = QuantizeConfig.model_validate({"gguf": ["Q8_0"], "executor": "ray"})
    assert resolve_executor_name(None, cfg.executor) == "ray"
    assert resolve_executor_name("local", cfg.executor) == "local"  # the flag wins
    # left out of the recorded settings and of the inputs digest: switching is not stale
    assert "executor" not in cfg.model_dump(mode="json")
    assert cfg.model_dump() == QuantizeConfig.model_validate({"gguf": ["Q8_0"]}).model_dump()


def test_release_hands_its_executor_to_quantize(monkeypatch: pytest.MonkeyPatch) -> None:
    import medrelease.quantize.step as quantize_step
    from medrelease.core.console import Reporter
    from medrelease.pipeline.steps import STEPS, ExecutorOptions, ReleaseOptions

    seen: dict[str, Any] = {}

    def fake(loaded: Any, **kw: Any) -> Any:
        seen.update(kw)
        return None

    monkeypatch.setattr(quantize_step, "quantize_release", fake)
    step = next(s for s in STEPS if s.name == "quantize")
    opts = step.options(ReleaseOptions(ExecutorOptions("ray", "10.0.0.1:6379")))
    step.run(object(), Path("build"), Reporter(quiet=True), opts, False)  # type: ignore[arg-type]
    assert seen["executor"] == "ray" and seen["ray_address"] == "10.0.0.1:6379"
