"""`--executor ray` on a two-node Ray cluster simulated on this machine (ray.cluster_utils,
CPU only, small object stores): the same report as the local executor, number for number; a
worker killed during a unit is retried; finished units survive; clear errors for an
unreachable address and for resources the cluster lacks; the local executor never imports ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.gatehelpers import LOCAL_GATES, gate_inputs, gate_recipe
from helpers import free_port, run_cli, two_node_ray_cluster
from medrelease.core.errors import EnvironmentProblem
from medrelease.executors import Resources, Unit, make_executor
from medrelease.executors.raycluster import FAULT_INJECT_KILL_FIRST_ATTEMPT
from medrelease.gate import step
from medrelease.gate.units import unit_resources
from medrelease.pipeline.recipes import load_recipe
from releases import built_release


def _gates() -> dict[str, Any]:
    return {
        **LOCAL_GATES,
        "tasks": [
            {"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"},
            {"preset": "mmlu_medical", "num_fewshot": 1},  # a group: per-subject metrics
        ],
        "rules": [
            {"metric": "demo_mcq/acc", "min": 0.0},
            {"metric": "mmlu_medical/anatomy/acc", "vs": "base", "max_drop": 1.0},
        ],
    }


N_UNITS = 4  # 2 models x 2 tasks


@dataclass
class Local:
    recipe: Path
    workdir: Path
    report: dict[str, Any]

    @property
    def cache(self) -> Path:
        return self.workdir / "tiny-gate" / ".cache" / "gates"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, llama: dict[str, Path]) -> Local:
    """The tiny release gated by the local executor: the reference every Ray run must equal."""
    root = tmp_path_factory.mktemp("ray-gate")
    built = built_release(
        root, "gate", gate_recipe(llama, _gates()), merged=gate_inputs(root, llama)
    )
    assert built.results["gate"].record["executor"] == {"name": "local"}
    return Local(built.recipe, built.workdir, built.results["gate"].report)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with two_node_ray_cluster() as c:
        yield c


def _numbers(report: dict[str, Any]) -> list[tuple[str, str, float | None, float | None]]:
    return [
        (m["metric"], model, m["values"][model], m["stderr"][model])
        for m in report["metrics"]
        for model in m["values"]
    ]


def _assert_same_report(ray_report: dict[str, Any], local_report: dict[str, Any]) -> None:
    got, want = _numbers(ray_report), _numbers(local_report)
    assert [g[:2] for g in got] == [w[:2] for w in want]  # same metrics, same order
    for (name, model, v, s), (_, _, v0, s0) in zip(got, want, strict=True):
        assert (v is None) == (v0 is None) and (v is None or abs(v - v0) <= 1e-12), (name, model)
        assert (s is None) == (s0 is None) and (s is None or abs(s - s0) <= 1e-12), (name, model)
    # and everything else (rules with their bootstrap CIs, tasks, harness, order) is identical
    assert json.dumps(ray_report, sort_keys=False) == json.dumps(local_report, sort_keys=False)


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_ray_report_equals_local_and_each_result_is_cached(local: Local, cluster: Any) -> None:
    result = step.gate_release(
        load_recipe(local.recipe),
        workdir=local.workdir,
        use_cache=False,  # every unit runs on the cluster
        executor="ray",
        ray_address=cluster.address,
    )
    assert result.record["evaluations"] == {"run": N_UNITS, "cached": 0}
    assert result.record["executor"] == {"name": "ray", "nodes": 2}
    _assert_same_report(result.report, local.report)

    # a finished unit is in the cache: lose one entry (a lost node) and only it runs again
    entries = sorted(local.cache.glob("*.json"))
    assert len(entries) == N_UNITS
    entries[0].unlink()
    again = step.gate_release(
        load_recipe(local.recipe),
        workdir=local.workdir,
        executor="ray",
        ray_address=cluster.address,
    )
    assert again.record["evaluations"] == {"run": 1, "cached": N_UNITS - 1}
    _assert_same_report(again.report, local.report)

    # nothing missing: Ray is not even contacted
    cached = step.gate_release(
        load_recipe(local.recipe), workdir=local.workdir, executor="ray", ray_address="127.0.0.1:1"
    )
    assert cached.record["evaluations"] == {"run": 0, "cached": N_UNITS}
    assert cached.record["executor"] == {"name": "ray", "nodes": None}


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
def test_worker_killed_during_a_unit_is_retried(
    local: Local, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = tmp_path / "killed"
    killed.mkdir()
    # fault-injection hook: the first attempt of every unit kills its worker (os._exit(1))
    monkeypatch.setenv(FAULT_INJECT_KILL_FIRST_ATTEMPT, str(killed))
    result = step.gate_release(
        load_recipe(local.recipe),
        workdir=local.workdir,
        use_cache=False,
        executor="ray",
        ray_address=cluster.address,
    )
    assert len(list(killed.glob("*.killed"))) == N_UNITS  # every unit really lost a worker
    assert result.record["evaluations"] == {"run": N_UNITS, "cached": 0}
    _assert_same_report(result.report, local.report)


@pytest.mark.slow
def test_unit_asking_for_a_gpu_on_a_cpu_cluster_is_refused(
    local: Local, cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    report = local.workdir / "tiny-gate" / "gates" / "report.json"
    before = report.read_bytes()
    code = run_cli(
        "gate", local.recipe, "--workdir", local.workdir, "--no-cache",
        "--set", "gates.device=cuda",
        "--executor", "ray", "--ray-address", cluster.address,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 7, err
    assert "needs 1 CPU, 1 GPU" in err and "no node of the Ray cluster" in err, err
    assert "gates.device: cpu" in err, err  # the fix
    assert report.read_bytes() == before  # nothing was written


@pytest.mark.slow
def test_unreachable_address_is_exit_7_with_the_fix(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    code = run_cli(
        "gate", local.recipe, "--workdir", local.workdir, "--no-cache",
        "--executor", "ray", "--ray-address", address,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 7, err
    assert f"cannot reach the Ray cluster at {address}" in err, err
    assert "ray start --head" in err, err
    assert "Traceback" not in err
    assert time.monotonic() - started < 60  # no minute-long retry loop


def test_unreachable_address_from_ray_address_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    ex = make_executor("ray")  # connects when there is work (or a question) for the cluster
    with pytest.raises(EnvironmentProblem, match="cannot reach the Ray cluster") as info:
        ex.resolve_device("auto")
    assert info.value.exit_code == 7


def test_unknown_executor_is_a_usage_error() -> None:
    from medrelease.core.errors import UsageError
    from medrelease.executors import resolve_executor_name

    assert resolve_executor_name(None, "ray") == "ray"
    assert resolve_executor_name("local", "ray") == "local"  # the flag wins
    with pytest.raises(UsageError, match="unknown executor 'rya'"):
        resolve_executor_name("rya", None)


def test_gpu_backends_declare_their_gpus(tmp_path: Path) -> None:
    """The vLLM/CUDA path cannot run here (no GPU): its units still declare what they need."""
    from medrelease.core.errors import RecipeError

    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2**20)
    vllm = unit_resources("vllm", "cuda", {"tensor_parallel_size": 2}, tmp_path)
    assert vllm.num_gpus == 2 and vllm.memory == 2**20 + 2**30
    assert unit_resources("hf", "cuda", {}, tmp_path).num_gpus == 1
    cpu = unit_resources("hf", "cpu", {}, tmp_path)
    assert cpu.num_gpus == 0 and cpu.memory == 2 * 2**20 + 2**30  # float32 copy of bf16
    with pytest.raises(RecipeError, match="data_parallel_size"):
        unit_resources("vllm", "cuda", {"data_parallel_size": 2}, tmp_path)


def test_local_executor_does_not_import_ray() -> None:
    code = (
        "import sys, medrelease.cli, medrelease.gate.step, medrelease.executors.local\n"
        "from medrelease.executors import make_executor\n"
        "make_executor('local').close()\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _sleep_and_record_pid(folder: str, state: dict[str, Any]) -> None:
    (Path(folder) / f"{os.getpid()}.pid").write_text("")
    time.sleep(300)  # far longer than the test waits: only a cancellation ends it in time


@pytest.mark.slow
@pytest.mark.heavy  # the heavy tier (make test-heavy, in CI); Ctrl-C on the CLI is in make test
def test_ctrl_c_cancels_the_clusters_tasks(cluster: Any, tmp_path: Path) -> None:
    from ray import cloudpickle

    from medrelease.core.console import Reporter

    # the workers cannot import this test module: ship the sleeper by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = make_executor("ray", address=cluster.address)
    units = [
        Unit(f"u{i}", f"sleeper {i}", _sleep_and_record_pid, str(tmp_path), Resources(1, 0, 0))
        for i in range(2)
    ]

    def interrupt_when_running() -> None:
        # both running, normally within seconds; on a loaded machine (the other xdist worker
        # busy) the second worker can be slow to start: Ctrl-C then also finds a pending task
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        import _thread

        _thread.interrupt_main()  # what Ctrl-C does

    # Ctrl-C as in a terminal: Python's own SIGINT handler. A test process started in the
    # background by a shell without job control inherits SIGINT ignored, and then
    # interrupt_main() does nothing (the CLI test below resets it in its child the same way)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_running, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(ex.run(units, Reporter(quiet=True)))
        pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert pids, "no unit was running when Ctrl-C came"
        time.sleep(5)  # a task left pending would start now, on the freed CPU
        assert sorted(int(p.stem) for p in tmp_path.glob("*.pid")) == sorted(pids)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "a unit kept running after Ctrl-C"
    finally:
        signal.signal(signal.SIGINT, previous)
        ex.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed worker may linger as a zombie until its raylet reaps it
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_on_the_cli_exits_130_and_leaves_no_report(local: Local, tmp_path: Path) -> None:
    """A real SIGINT to the command's process group (what Ctrl-C in a terminal sends) while
    units run on a local Ray instance: exit 130, no report, no Ray process left behind."""
    import shutil

    workdir = tmp_path / "build"
    shutil.copytree(local.workdir / "tiny-gate" / "merged", workdir / "tiny-gate" / "merged")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "medrelease.cli", "gate", str(local.recipe),
           "--workdir", str(workdir), "--executor", "ray"]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 180
        while not _units_running(proc.pid) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.3)
        assert _units_running(proc.pid), "no unit started on the local Ray instance"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert not (workdir / "tiny-gate" / "gates" / "report.json").exists()
    time.sleep(2)
    assert not _session_processes(proc.pid), "Ray processes left behind"


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "sid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split(None, 1)[0] == str(sid)]


def _units_running(sid: int) -> bool:
    return any("ray::" in p and "lm-eval" in p for p in _session_processes(sid))
