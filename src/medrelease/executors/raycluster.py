"""The `ray` executor: each unit is one Ray task with its resources declared.

Connects to `address` (`ray start --head` prints it; `auto` finds one on this machine) or, when
none is given, starts a local Ray instance for this run. Results come back to the driver as each
task finishes. Faults:

* a worker process that dies mid-unit (OOM kill, segfault, lost node) is retried by Ray, at most
  `MAX_RETRIES` times; application errors are not retried (they would fail again);
* Ctrl-C (or any error) cancels every task still queued or running on the cluster;
* an address nobody answers on, or a unit asking for resources no node has, is an
  EnvironmentProblem (exit 7) before anything is submitted, instead of a hang.

Every node must see the model folders and task files, and the release's build folder (where
quant units write their quants and read the shared reference), at the driver's paths (a
shared filesystem).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medrelease.core.console import Reporter
from medrelease.core.errors import EnvironmentProblem, MedreleaseError
from medrelease.core.manifest import ExecutorRecord
from medrelease.executors.units import Resources, Unit

MAX_RETRIES = 2  # a unit whose worker dies three times is a real problem (memory, a bad node)
LOCAL_OBJECT_STORE = 256 * 2**20  # results are small JSON: no need for Ray's 30%-of-RAM default
CONNECT_TIMEOUT_S = 5.0

# Fault-injection hook, for tests only: when set to a folder, the first attempt of each unit
# creates `<folder>/<unit key>.killed` and kills its own worker process with os._exit(1), as an
# OOM kill would; the retry finds the file and runs normally.
FAULT_INJECT_KILL_FIRST_ATTEMPT = "MEDRELEASE_FAULT_INJECT_KILL_FIRST_ATTEMPT"

# Variables the units' libraries read (offline mode, caches, NLTK data), forwarded to the workers
# of an existing cluster, whose own environment is that of `ray start`. Never credentials.
_FORWARD_PREFIXES = ("HF_", "TRANSFORMERS_", "NLTK_DATA", "TQDM_DISABLE", "MEDRELEASE_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")

_FIX = (
    "start a cluster with `ray start --head` and pass the address it prints "
    "(--ray-address or RAY_ADDRESS), or leave both unset to run a local Ray instance"
)


def _forwarded_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(_FORWARD_PREFIXES) and not any(w in k for w in _SECRET_WORDS)
    }


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of `host:port` or `ray://host:port`; None for `auto`/`local`."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """Fail in seconds with the fix; ray.init would retry an unreachable GCS for a minute."""
    hp = _host_port(address)
    if hp is None:
        if address in ("auto", "local"):
            return
        raise EnvironmentProblem(
            f"{address!r} is not a Ray cluster address (host:port or ray://host:port)",
            hint=_FIX,
        )
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}", hint=_FIX
        ) from None


def _run_unit(fn: Any, payload: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """Runs on a Ray worker: the unit, plus where and how long (for the driver's log)."""
    hook = os.environ.get(FAULT_INJECT_KILL_FIRST_ATTEMPT)
    if hook:
        try:
            fd = os.open(Path(hook) / f"{key}.killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass  # the retry: run normally
        else:
            os.close(fd)
            os._exit(1)
    from medrelease.core.quiet import quiet_libraries

    os.environ.setdefault("TQDM_DISABLE", "1")
    quiet_libraries()
    start = time.perf_counter()
    result = fn(payload, {})
    return result, {"host": socket.gethostname(), "seconds": time.perf_counter() - start}


def _node_fits(node: dict[str, Any], need: Resources) -> bool:
    have = node.get("Resources") or {}
    return (
        have.get("CPU", 0) >= need.num_cpus
        and have.get("GPU", 0) >= need.num_gpus
        and have.get("memory", 0) >= need.memory
    )


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None):
        self.address = address  # None: a local Ray instance, started and stopped by us
        self._connected_here = False
        self._connected = False  # lazily: a run with every unit cached never starts Ray

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> None:
        import ray

        if self._connected:
            return
        if ray.is_initialized():  # a caller (a notebook, a test) already connected this process
            self._connected = True
            return
        log_level = logging.INFO if os.environ.get("MEDRELEASE_DEBUG") else logging.WARNING
        common: dict[str, Any] = {
            "logging_level": log_level,
            "log_to_driver": bool(os.environ.get("MEDRELEASE_DEBUG")),
            "runtime_env": {"env_vars": _forwarded_env()},
        }
        try:
            if self.address is None:
                # a cluster that lives for this run only: its token-auth notice is noise
                logging.getLogger(
                    "ray._private.authentication.authentication_token_setup"
                ).setLevel(logging.ERROR)
                ray.init(
                    address="local",
                    object_store_memory=LOCAL_OBJECT_STORE,
                    include_dashboard=False,
                    **common,
                )
            else:
                _check_reachable(self.address)
                ray.init(address=self.address, **common)
        except MedreleaseError:
            raise
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = self.address or "a local Ray instance"
            raise EnvironmentProblem(
                f"cannot connect to the Ray cluster at {where}: {exc}", hint=_FIX
            ) from None
        self._connected = self._connected_here = True

    def close(self) -> None:
        if self._connected_here:
            import ray

            ray.shutdown()  # a local instance stops with it; a remote cluster keeps running
            self._connected_here = False
        self._connected = False

    # -- what the cluster has -----------------------------------------------------------
    def _alive_nodes(self) -> list[dict[str, Any]]:
        import ray

        self._connect()
        return [n for n in ray.nodes() if n.get("Alive")]

    def resolve_device(self, device: str) -> str:
        """`auto` means where the units run: cuda when any node of the cluster has a GPU."""
        if device != "auto":
            return device
        has_gpu = any((n.get("Resources") or {}).get("GPU", 0) > 0 for n in self._alive_nodes())
        return "cuda" if has_gpu else "cpu"

    def check_resources(self, units: Sequence[Unit]) -> None:
        """A unit no node can hold would wait forever in Ray's queue: refuse it now."""
        nodes = self._alive_nodes()
        for unit in units:
            if any(_node_fits(n, unit.resources) for n in nodes):
                continue
            most = {
                k: max(((n.get("Resources") or {}).get(k, 0) for n in nodes), default=0)
                for k in ("CPU", "GPU", "memory")
            }
            biggest = f"{most['CPU']:g} CPU, {most['GPU']:g} GPU, {most['memory'] / 2**30:.1f} GiB"
            if unit.resources.num_gpus > most["GPU"]:
                fix = "add a node with GPUs to the cluster, or set gates.device: cpu"
            elif unit.resources.num_cpus > most["CPU"]:  # a quant unit asks for --threads CPUs
                fix = (
                    f"add a node with {unit.resources.num_cpus:g} CPUs to the cluster, or give "
                    f"each unit fewer threads (quantize --threads {max(int(most['CPU']), 1)})"
                )
            else:
                fix = "add a bigger node to the cluster, or run with --executor local"
            raise EnvironmentProblem(
                f"{unit.label} needs {unit.resources.describe()} on one node, but no node of "
                f"the Ray cluster has that (largest: {biggest}; {len(nodes)} node(s))",
                hint=fix,
            )

    def describe(self) -> ExecutorRecord:
        if not self._connected:
            return {"name": self.name, "nodes": None}  # nothing ran: Ray was not started
        return {"name": self.name, "nodes": len(self._alive_nodes())}

    # -- running ------------------------------------------------------------------------
    def run(self, units: Sequence[Unit], reporter: Reporter) -> Iterator[tuple[int, Any]]:
        import ray
        from ray.exceptions import RayTaskError, WorkerCrashedError

        if not units:
            return
        self.check_resources(units)
        remote = ray.remote(_run_unit)
        index: dict[Any, int] = {}
        for i, unit in enumerate(units):
            r = unit.resources
            ref = remote.options(
                num_cpus=r.num_cpus,
                num_gpus=r.num_gpus,
                memory=r.memory or None,
                max_retries=MAX_RETRIES,
                retry_exceptions=False,
                name=unit.label,
            ).remote(unit.fn, unit.payload, unit.key)
            index[ref] = i
        pending = list(index)
        where = self.address or "a local Ray instance"
        try:
            with reporter.phase(f"{len(units)} unit(s) on Ray ({where})", total=len(units)) as adv:
                while pending:
                    # short waits: a blocking wait would hold Ctrl-C until a unit ends
                    done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    for ref in done:
                        unit = units[index[ref]]
                        try:
                            result, info = ray.get(ref)
                        except RayTaskError as exc:
                            cause = getattr(exc, "cause", None)
                            if isinstance(cause, MedreleaseError):
                                raise cause from None
                            raise
                        except WorkerCrashedError:
                            raise EnvironmentProblem(
                                f"{unit.label}: its Ray worker died {MAX_RETRIES + 1} times",
                                hint="out of memory? see the node's logs under "
                                "/tmp/ray/session_latest/logs; give the cluster more memory",
                            ) from None
                        adv()
                        reporter.info(
                            f"{unit.label}: done on {info['host']} ({info['seconds']:.1f} s)"
                        )
                        yield index[ref], result
        except BaseException:
            # Ctrl-C, an error, or the caller stopped: nothing may keep running on the cluster
            for ref in pending:
                with contextlib.suppress(Exception):  # Ctrl-C may have stopped a local Ray too
                    ray.cancel(ref, force=True)
            raise
