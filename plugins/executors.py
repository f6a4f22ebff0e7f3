"""The built-in executors: ``local`` (the units in order, in this process, or with
``--cpus`` several at once in worker processes) and ``ray`` (independent units in
parallel on a Ray cluster: a local one started for the run, or ``--address`` of a
running one). Written against ``neuroscope.plugin`` only, like a third-party executor
(docs/plugins.md, docs/distributed.md).

Ray: each unit is a task declaring ``num_cpus`` (``--cpus-per-unit``), ``num_gpus`` (with
a CUDA ``--device``: ``--model-gpus`` for the units that run the model, 1 for the probes'
units, none for the finish unit without ``--causal``) and ``memory`` (``--unit-memory``,
estimated by default; never more than the largest node offers); inside it torch's and
the BLAS's threads are limited to those CPUs. With ``--placement data`` (the default) a cell's units prefer the
node its extract unit ran on (soft node affinity: its activations are in that node's
cache even when caches are node-local). A task whose worker or node dies is submitted
again by the driver (``max_retries``, default 3), reported with its cause: a retried unit
starts from the run directory's files, the finished units' steps, which only the driver
writes. A user error (bad data, a missing checkpoint) is
not retried: its cell fails with its one-line message and the other cells go on. Ctrl-C
cancels the tasks in flight; ``--resume`` continues.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from neuroscope.plugin import (GraphProgress, LocalExecutor, NeuroscopeError, Retried, Unit, UnitOutcome, cell_files,
                               error_line, hookimpl, run_graph, run_unit)

log = logging.getLogger(__name__)


def _run_remote(unit: Unit, files: dict | None) -> UnitOutcome:
    import attrs
    import ray

    outcome = run_unit(unit, files, quiet=True, name_node=True)
    return attrs.evolve(outcome, placement=ray.get_runtime_context().get_node_id())


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an ``--address`` (``HOST:PORT`` or ``ray://HOST:PORT``) where nothing
    listens, or where what listens does not answer a gRPC connection preface as Ray's GCS
    (and client server) do, within ``timeout`` seconds: Ray itself would retry for minutes
    before failing, printing its own log lines."""
    import socket

    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise NeuroscopeError(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT (or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(HTTP2_PREFACE)
            answer = _read(connection, 9)
    except OSError as exc:
        raise NeuroscopeError(f"--executor ray: cannot start or reach the Ray cluster at {address} (nothing answers "
                              f"there: {exc.strerror or exc}); start one with `ray start --head` or check the "
                              "address") from None
    if len(answer) < 9 or answer[3] != 0x04:  # a gRPC server answers the preface with a SETTINGS frame
        raise NeuroscopeError(f"--executor ray: {address} answers, but not as a Ray head (its GCS or client server "
                              "speaks gRPC; this does not); check the address and port (`ray status` on the head)")


#: the HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC client sends first
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _read(connection: Any, n: int) -> bytes:
    """Up to ``n`` bytes, fewer where the peer closes first."""
    data = b""
    while len(data) < n:
        chunk = connection.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class RayExecutor:
    """Units as Ray tasks, each submitted once the units it waits for have finished."""

    def __init__(self, *, address: str | None = None, cpus: int | None = None, max_retries: int = 3,
                 runtime_env: dict[str, Any] | None = None, placement: str = "data", **_: Any):
        try:
            import ray
        except ImportError:
            raise NeuroscopeError("--executor ray needs Ray: pip install \"neuroscope-nlp[ray]\"") from None
        self.ray = ray
        self.address = address
        self.cpus = cpus
        self.max_retries = int(max_retries)
        self.runtime_env = runtime_env
        if placement not in ("data", "spread"):
            raise NeuroscopeError(f"placement {placement!r}: expected data or spread")
        self.placement = placement

    def _start(self) -> bool:
        """Connect to ``address`` or start a local Ray; True when this executor started it."""
        if self.ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if self.runtime_env is not None:
            options["runtime_env"] = self.runtime_env
        if self.address and self.address != "auto":
            reachable(self.address)
        try:
            if self.address:
                self.ray.init(address=self.address, **options)
            else:
                self.ray.init(num_cpus=self.cpus, **options)
        except Exception as exc:  # ConnectionError, RuntimeError, ... depending on how the address fails
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            hint = ("; if the cluster uses token authentication (Ray 2.52+), this driver needs RAY_AUTH_MODE=token and "
                    "the cluster's token too (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; "
                    "docs/distributed.md)") if self.address and isinstance(exc, ConnectionError) else ""
            raise NeuroscopeError(f"--executor ray: cannot start or reach {where} ({error_line(exc)}){hint}") from None
        return True

    def run(self, units: Sequence[Unit], report: Any, reporter: Any = None) -> dict[str, UnitOutcome]:
        started = self._start()
        try:
            if reporter is None:
                return self._run(units, report, None, lambda n: None)
            with reporter.running(), reporter.task(f"units on Ray ({len(units)})", len(units), "units") as advance:
                return self._run(units, report, reporter, advance)
        finally:
            if started:
                self.ray.shutdown()

    def _run(self, units: Sequence[Unit], report: Any, reporter: Any, advance: Any) -> dict[str, UnitOutcome]:
        """Submit each unit once its dependencies are done; report outcomes as they come. A
        unit whose worker or node died is submitted again, up to ``max_retries`` times, by
        this driver (not by Ray), so that each retry is reported with its unit and cause
        and recorded in the cell's timings.json."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = self.ray.remote(max_retries=0, retry_exceptions=False)(_run_remote)
        submitted: dict[Any, tuple[Unit, Any, int]] = {}  # handle -> (unit, its files, attempt)
        origin = {u.id: u.id for u in units if u.kind == "extract"}  # unit -> the extract unit of its activations
        for u in units:
            if u.kind != "extract" and u.after:
                origin[u.id] = origin.get(u.after[0], u.after[0])
        extracted_on: dict[str, str] = {}  # extract unit -> the Ray node it ran on

        largest = largest_node_memory(self.ray)
        warned: set[str] = set()

        def launch(unit: Unit, files: Any, attempt: int) -> Any:
            options: dict[str, Any] = {"num_cpus": unit.cpus, "num_gpus": unit.gpus, "name": unit.id}
            if unit.memory:
                options["memory"] = min(int(unit.memory), largest) if largest else int(unit.memory)
                if largest and unit.memory > largest and unit.kind not in warned:
                    warned.add(unit.kind)
                    log.warning("%s declares %.1f GB of memory, more than any node of the cluster offers (%.1f GB): "
                                "it asks for that node's whole memory; --unit-memory %s=SIZE sets it", unit.id,
                                unit.memory / 1e9, largest / 1e9, unit.kind)
            node = extracted_on.get(origin.get(unit.id, ""))
            if self.placement == "data" and node is not None and unit.kind != "extract":
                # soft: another node only where that one is gone or can never fit the unit
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
            ref = remote.options(**options).remote(unit, files)
            submitted[ref] = (unit, files, attempt)
            return ref

        def submit(unit: Unit) -> Any:
            return launch(unit, cell_files(unit), 1)

        def wait(refs: list) -> tuple[Any, Any]:
            done, _ = self.ray.wait(refs, num_returns=1)
            ref = done[0]
            try:
                outcome = self.ray.get(ref)
                unit = submitted[ref][0]
                if unit.kind == "extract" and getattr(outcome, "placement", None):
                    extracted_on[unit.id] = outcome.placement
                return ref, outcome
            except self.ray.exceptions.RayError as exc:
                unit, files, attempt = submitted[ref]
                cause = error_line(exc)
                if system_failure(self.ray, exc) and attempt <= self.max_retries:
                    return ref, Retried(launch(unit, files, attempt + 1), cause, attempt + 1)
                return ref, getattr(exc, "cause", None) or exc

        try:
            return run_graph(units, report, submit, wait, GraphProgress(units, reporter), advance)
        except KeyboardInterrupt:
            for ref in submitted:
                self.ray.cancel(ref, force=True)
            raise


def largest_node_memory(ray: Any) -> int:
    """The largest ``memory`` resource of the cluster's live nodes, in bytes (0: none says):
    a unit declaring more would wait for a node that never comes, so it asks for this."""
    try:
        return int(max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0))
    except Exception:  # a Ray Client connection or an older Ray without the node table: nothing capped
        return 0


def system_failure(ray: Any, exc: BaseException) -> bool:
    """Whether a Ray error is the machine's, not the unit's: a worker or node that died, an
    object lost with it, memory that ran out. An exception raised by the unit's own code
    (``RayTaskError``) or a cancellation is not retried."""
    return not isinstance(exc, (ray.exceptions.RayTaskError, ray.exceptions.TaskCancelledError))


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
    register("ray", RayExecutor)
