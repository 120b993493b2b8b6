"""Executors: how a run's trials are carried out. The driver (``slmbench.engine.runner``) stays the only
writer of records; an executor only runs trials and hands each record back through ``on_done``.

- ``LocalExecutor``: one trial after another in this process (the default).
- ``RayExecutor``: every trial a Ray task, run in parallel on a local Ray instance or a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmbench.engine.planning import PlannedTrial
    from slmbench.records import MemoryEstimate, TrialRecord

OnDone = Callable[["PlannedTrial", "TrialRecord"], None]


class LocalExecutor:
    """Trials one after another in this process, sharing one model cache (splits and models load once).

    ``timeout_seconds`` stops a trial with status ``timeout``; Ctrl-C or SIGTERM records the running
    trial as ``cancelled`` and stops the run (KeyboardInterrupt).
    """

    def __init__(self, progress: Any, timeout_seconds: float | None = None) -> None:
        from slmbench.engine.model_cache import ModelCache

        self.model_cache = ModelCache(progress)
        self.timeout_seconds = timeout_seconds

    def run(self, trials: Sequence[PlannedTrial], on_done: OnDone) -> None:
        from slmbench.engine.trial import run_trial

        for planned in trials:
            record = run_trial(
                planned.config,
                planned.strategy,
                self.model_cache,
                planned.artifact_dir,
                self.timeout_seconds,
                planned.variant,
                planned.members,
            )
            on_done(planned, record)
            if record.status == "cancelled":
                raise KeyboardInterrupt

    def call(self, function: Callable[..., Any], *args: Any, device: str) -> Any:
        """``function(*args, model_cache)`` in this process, with the models the trials loaded (``device``: where
        the work runs, already this process's)."""
        return function(*args, self.model_cache)


RAY_INSTALL_HINT = "the ray executor needs Ray: pip install 'slmbench[ray]'"
FORWARDED_ENVIRONMENT = ("SLMBENCH_", "HF_", "PYTHONPATH", "TQDM_DISABLE")
"""Environment variables (prefixes) the driver hands to every Ray worker of its job."""
BACKSTOP_SECONDS = 60.0
"""A trial's worker enforces ``--trial-timeout`` on its running time; the driver cancels the task only
if no answer came this long after that (a worker stuck in native code)."""
POLL_SECONDS = 2.0
"""How often the driver looks at the cluster's nodes while it waits for trials."""
_MODEL_CACHES: dict[bool, Any] = {}
"""One model cache per Ray worker process (per progress setting): the shared models stay loaded between the
CPU trials Ray sends to the same worker, so parallel runs do not pay the model loading per trial."""
log = logging.getLogger(__name__)


def import_ray() -> Any:
    """``ray``, or a RunError saying how to install it."""
    from slmbench.engine.run_options import RunError

    try:
        import ray
    except ImportError:
        raise RunError(RAY_INSTALL_HINT) from None
    return ray


def _output_problem(directory: Path) -> str | None:
    """Why this node cannot write the run's artifacts, or None."""
    import socket

    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".slmbench-write-check"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        return (
            f"node {socket.gethostname()} cannot write {directory}: {error.strerror or error}. The output folder must be "
            "reachable and writable from every node of the Ray cluster (a shared filesystem): pass such a folder as --output"
        )
    return None


def ray_trial(
    config: dict,
    strategy: type,
    artifact_dir: str,
    variant: str,
    threads: int | None,
    progress_bars: bool,
    members: list[dict],
    timeout_seconds: float | None = None,
) -> dict:
    """A Ray task: one trial in a worker process, returned as a plain record for the driver to write.

    ``timeout_seconds`` limits its running time (not the time it waited to be scheduled)."""
    import ray
    import torch

    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.trial import run_trial
    from slmbench.records import ErrorInfo, TrialConfig, TrialRecord

    if threads:
        torch.set_num_threads(threads)
    trial_config = TrialConfig.model_validate(config)
    if (problem := _output_problem(Path(artifact_dir))) is not None:
        record = TrialRecord(
            strategy=trial_config.strategy,
            variant=variant,
            config=trial_config,
            config_hash=trial_config.config_hash(),
            error=ErrorInfo(type="OutputNotWritable", message=problem),
        )
        return record.model_dump(mode="json")
    if progress_bars not in _MODEL_CACHES:
        _MODEL_CACHES[progress_bars] = ModelCache(ProgressReporter(enabled=progress_bars))
    member_records = [TrialRecord.model_validate(member) for member in members]
    record = run_trial(trial_config, strategy, _MODEL_CACHES[progress_bars], Path(artifact_dir), timeout_seconds, variant, member_records)
    record.environment = record.environment.model_copy(update={"node": ray.get_runtime_context().get_node_id()})
    return record.model_dump(mode="json")


def _describe(resources: dict[str, float]) -> str:
    """``2 CPU, 0.5 GPU`` (zero amounts left out)."""
    return ", ".join(f"{amount:g} {name}" for name, amount in resources.items() if amount) or "nothing"


class RayExecutor:
    """Each trial a Ray task; this process only submits, collects (``ray.wait``, in completion order) and
    hands records back, so it stays the only writer of records and reports.

    **Resources.** Each trial asks Ray for ``threads_per_trial`` CPUs (torch uses as many threads) and,
    on CUDA, a GPU share (``gpu_share``): none for a strategy that never touches a GPU, a whole GPU
    when its memory estimate does not fit in ``gpus_per_trial`` of one, else ``gpus_per_trial``.
    Before anything is submitted, a trial that no node of the cluster could ever hold is a
    ``RunError`` naming what it asks and what the cluster has (instead of a task Ray waits on forever).

    **Admission.** A trial is submitted only when the cluster has room for it beside those in flight
    (at most ``workers``, and no more CPUs or GPUs than the cluster's), so it starts when submitted.
    A GPU trial gets a fresh worker process (``max_calls=1``): no device or GPU memory carried over.

    **Time limit.** ``timeout_seconds`` bounds a trial's running time: its worker stops it (status
    ``timeout``, what it learnt kept); the driver cancels the task itself (``ray.cancel``) only if no
    answer came ``BACKSTOP_SECONDS`` after that.

    **Failures.** A worker or node that dies is retried (``max_retries``) on whatever node can hold the
    trial, and the driver logs the lost node; an exception inside a strategy is a failed trial (the
    trial catches it), never retried. Ctrl-C or SIGTERM cancels every trial in flight (recorded
    ``cancelled``) and stops the run.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        address: str | None = None,
        threads_per_trial: int | None = None,
        gpus_per_trial: float = 1.0,
        timeout_seconds: float | None = None,
        progress_bars: bool = False,
        max_retries: int = 3,
    ) -> None:
        import os

        self.ray = import_ray()
        self.address, self.timeout_seconds, self.progress_bars = address, timeout_seconds, progress_bars
        self.max_retries, self.gpus_per_trial = max_retries, gpus_per_trial
        if not self.ray.is_initialized():
            self._start()
        if workers is None:
            cpus = int(self.ray.cluster_resources().get("CPU", os.cpu_count() or 1))
            workers = max(1, cpus // (threads_per_trial or 1))
        self.workers = workers
        self.threads_per_trial = threads_per_trial or max(1, (os.cpu_count() or 1) // workers)
        self._gpu_memory: float | None = None

    def _start(self) -> None:
        """Join the cluster at ``address``, or start a local instance sized for the trials."""
        import os

        from slmbench.engine.run_options import RunError

        environment = {"env_vars": {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENVIRONMENT)}}
        try:
            quiet = {"runtime_env": environment, "logging_level": "error"}
            if self.address:
                self.ray.init(address=self.address, **quiet)
            else:
                self.ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RunError(f"--ray-address {self.address}: cannot join the Ray cluster: {error}") from None

    # --- what each trial asks for ------------------------------------------------------------------

    def gpu_share(self, planned: PlannedTrial) -> float:
        """The GPUs a trial asks for: 0 off CUDA or for a strategy that never uses a GPU; 1 (a whole GPU)
        when its memory estimate exceeds ``gpus_per_trial`` of the cluster's GPU; else ``gpus_per_trial``."""
        if not planned.config.models.device.startswith("cuda") or not planned.strategy.metadata.needs_gpu:
            return 0.0
        share = self.gpus_per_trial
        if share < 1 and (memory := self._cluster_gpu_memory_mb()) is not None:
            estimate = trial_memory_estimate(planned)
            if estimate is not None and estimate.total_mb > share * memory:
                return 1.0
        return share

    def resources(self, planned: PlannedTrial) -> dict[str, float]:
        """What ``planned`` asks Ray for: CPUs and its GPU share."""
        return {"CPU": float(self.threads_per_trial), "GPU": self.gpu_share(planned)}

    def _cluster_gpu_memory_mb(self) -> float | None:
        """One GPU's memory on the cluster: ``SLMBENCH_DEVICE_MEMORY_MB`` if set, else this machine's GPU's,
        else asked of a GPU node (None when the cluster has no GPU or does not answer in time)."""
        from slmbench.lm.memory_estimate import device_memory_mb

        if self._gpu_memory is None:
            here = device_memory_mb("cuda")
            if here is not None:
                self._gpu_memory = here
            elif self.ray.cluster_resources().get("GPU", 0) > 0:
                probe = self.ray.remote(num_gpus=0.01, num_cpus=0)(_gpu_memory_mb)
                try:
                    self._gpu_memory = self.ray.get(probe.remote(), timeout=60)
                except (self.ray.exceptions.GetTimeoutError, self.ray.exceptions.RayError):
                    return None
        return self._gpu_memory

    def _nodes(self) -> dict[str, dict[str, float]]:
        """The cluster's live nodes: id -> total resources."""
        return {node["NodeID"]: node["Resources"] for node in self.ray.nodes() if node["Alive"]}

    def check_cluster(self, requests: dict[str, dict[str, float]]) -> None:
        """A RunError unless some live node could hold each request (trial key -> resources): naming
        what is asked and what the cluster has, instead of Ray waiting forever."""
        from slmbench.engine.run_options import RunError

        nodes = self._nodes()
        impossible = {
            key: request
            for key, request in requests.items()
            if not any(all(resources.get(name, 0) >= amount for name, amount in request.items() if amount) for resources in nodes.values())
        }
        if not impossible:
            return
        asked = sorted({_describe(request) for request in impossible.values()})
        keys = sorted(impossible)
        cluster = "; ".join(
            f"node {node[:8]}: {_describe({k: v for k, v in r.items() if k in ('CPU', 'GPU')})}" for node, r in nodes.items()
        )
        hint = (
            "lower --gpus-per-trial, run on CPU (--device cpu), or add GPU nodes"
            if any(request.get("GPU") for request in impossible.values())
            else "lower --threads-per-trial or add larger nodes"
        )
        raise RunError(
            f"{len(keys)} trial{'s' if len(keys) > 1 else ''} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}) "
            f"ask{'' if len(keys) > 1 else 's'} for {' or '.join(asked)} each, but no node of the Ray cluster has that "
            f"({cluster or 'no live node'}): {hint}"
        )

    # --- running -----------------------------------------------------------------------------------

    def run(self, trials: Sequence[PlannedTrial], on_done: OnDone) -> None:
        import time

        requests = {planned.key: self.resources(planned) for planned in trials}
        self.check_cluster(requests)
        capacity = {name: sum(node.get(name, 0.0) for node in self._nodes().values()) for name in ("CPU", "GPU")}
        # a CPU trial reuses its worker (and its loaded models); a GPU trial starts in a fresh one: no device or
        # GPU memory carried over from the last trial (Ray's own default for GPU tasks)
        remote = {False: self.ray.remote(max_calls=0)(ray_trial), True: self.ray.remote(max_calls=1)(ray_trial)}
        queue = list(trials)
        in_flight: dict[Any, tuple[PlannedTrial, float | None]] = {}  # Ray task -> (trial, backstop deadline)
        nodes = set(self._nodes())

        def fits(request: dict[str, float]) -> bool:
            used = {name: sum(requests[trial.key][name] for trial, _ in in_flight.values()) for name in capacity}
            return len(in_flight) < self.workers and all(used[name] + request[name] <= capacity[name] + 1e-9 for name in capacity)

        def submit(planned: PlannedTrial) -> None:
            request = requests[planned.key]
            task = (
                remote[bool(request["GPU"])]
                .options(
                    num_cpus=request["CPU"],
                    num_gpus=request["GPU"],
                    max_retries=self.max_retries,
                    retry_exceptions=False,
                )
                .remote(
                    planned.config.model_dump(mode="json"),
                    planned.strategy,
                    str(planned.artifact_dir),
                    planned.variant,
                    int(request["CPU"]),
                    self.progress_bars,
                    [member.model_dump(mode="json") for member in planned.members],
                    self.timeout_seconds,
                )
            )
            deadline = time.monotonic() + self.timeout_seconds + BACKSTOP_SECONDS if self.timeout_seconds else None
            in_flight[task] = (planned, deadline)

        try:
            while queue or in_flight:
                for planned in list(queue):  # in plan order, each trial the cluster has room for now
                    if fits(requests[planned.key]):
                        queue.remove(planned)
                        submit(planned)
                if queue and not in_flight:  # nothing fits even alone (the cluster shrank): Ray will wait for room
                    submit(queue.pop(0))
                deadlines = [deadline for _, deadline in in_flight.values() if deadline is not None]
                wait = min([POLL_SECONDS, *(max(0.0, deadline - time.monotonic()) for deadline in deadlines)])
                ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=wait)
                for task in ready:
                    planned, _ = in_flight.pop(task)
                    on_done(planned, self._collect(task, planned, requests[planned.key]))
                nodes = self._report_lost_nodes(nodes)
                now = time.monotonic()
                for task, (planned, deadline) in list(in_flight.items()):
                    if deadline is not None and now >= deadline:
                        self.ray.cancel(task, force=True)
                        del in_flight[task]
                        message = f"stopped after the {self.timeout_seconds:g} s trial time limit (cancelled: no answer from its worker)"
                        on_done(planned, _stopped(planned, "timeout", "TrialTimeout", message, requests[planned.key]))
        except KeyboardInterrupt:
            for task, (planned, _) in in_flight.items():
                self.ray.cancel(task, force=True)
                message = "interrupted by the user or a SIGTERM (Ray task cancelled)"
                on_done(planned, _stopped(planned, "cancelled", "KeyboardInterrupt", message, requests[planned.key]))
            raise

    def call(self, function: Callable[..., Any], *args: Any, device: str) -> Any:
        """``function(*args, None)`` as one Ray task with a trial's resources on ``device`` (its GPU share on
        CUDA: the work runs where the trials ran, not on the driver's machine); its result."""
        gpus = self.gpus_per_trial if device.startswith("cuda") else 0.0
        remote = self.ray.remote(max_calls=1 if gpus else 0)(function)
        return self.ray.get(remote.options(num_cpus=self.threads_per_trial, num_gpus=gpus).remote(*args, None))

    def _report_lost_nodes(self, known: set[str]) -> set[str]:
        """Log each node that left the cluster since ``known``; the live nodes now."""
        alive = set(self._nodes())
        for node in sorted(known - alive):
            log.warning(
                "Ray node %s left the cluster: the trials it was running are retried on the other nodes (up to %d retries each)",
                node,
                self.max_retries,
            )
        return alive

    def _collect(self, task: Any, planned: PlannedTrial, request: dict[str, float]) -> TrialRecord:
        """The trial's record, or a failed one when Ray gave up on the task (worker died past its retries)."""
        from slmbench.records import TrialRecord

        try:
            record = TrialRecord.model_validate(self.ray.get(task))
        except self.ray.exceptions.RayError as error:
            return _stopped(planned, "failed", type(error).__name__, f"{error} (after {self.max_retries} retries)", request)
        return record.model_copy(update={"resources": request})


def _gpu_memory_mb() -> float | None:
    """A Ray task: the memory of the GPU it was given, in MiB (None where torch sees no GPU)."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**20 if torch.cuda.is_available() else None


def trial_memory_estimate(planned: PlannedTrial) -> MemoryEstimate | None:
    """The memory ``planned`` is estimated to need on its device, by its strategy's ``estimate_memory``;
    None if a model's shape cannot be read."""
    from slmbench.lm.memory_estimate import estimate_before_trial

    return estimate_before_trial(planned.strategy.estimate_memory, planned.memory_request())


def _stopped(planned: PlannedTrial, status: str, error_type: str, message: str, resources: dict[str, float]) -> TrialRecord:
    """The record the driver writes for a trial it stopped or lost."""
    from datetime import datetime, timezone

    from slmbench.records import ErrorInfo, TrialRecord

    return TrialRecord(
        strategy=planned.config.strategy,
        variant=planned.variant,
        status=status,
        config=planned.config,
        config_hash=planned.config.config_hash(),
        description=planned.strategy.description,
        family=str(planned.strategy.family.value),
        error=ErrorInfo(type=error_type, message=message),
        resources=resources,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
