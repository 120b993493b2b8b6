"""Executors: how a run's trials are carried out. The driver (``slmbench.engine.runner``) stays the only
writer of records; an executor only runs trials and hands each record back through ``on_done``.

- ``LocalExecutor``: one trial after another in this process (the default).
- ``RayExecutor``: every trial a Ray task, run in parallel on a local Ray instance or a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmbench.engine.planning import PlannedTrial
    from slmbench.records import TrialRecord

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


RAY_INSTALL_HINT = "the ray executor needs Ray: pip install 'slmbench[ray]'"
FORWARDED_ENVIRONMENT = ("SLMBENCH_", "HF_", "PYTHONPATH", "TQDM_DISABLE")
"""Environment variables (prefixes) the driver hands to every Ray worker of its job."""
_MODEL_CACHES: dict[bool, Any] = {}
"""One model cache per Ray worker process (per progress setting): the shared models stay loaded between the
trials Ray sends to the same worker, so parallel runs do not pay the model loading per trial."""


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
    config: dict, strategy: type, artifact_dir: str, variant: str, threads: int | None, progress_bars: bool, members: list[dict]
) -> dict:
    """A Ray task: one trial in a worker process, returned as a plain record for the driver to write."""
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
    record = run_trial(trial_config, strategy, _MODEL_CACHES[progress_bars], Path(artifact_dir), None, variant, member_records)
    return record.model_dump(mode="json")


class RayExecutor:
    """Each trial a Ray task; this process only submits, collects (``ray.wait``, in completion order) and
    hands records back, so it stays the only writer of records and reports.

    At most ``workers`` trials are in flight, so a trial starts when it is submitted and
    ``timeout_seconds`` is measured from then: past it, the driver cancels the task (``ray.cancel``,
    forcing the worker to stop) and records ``timeout``. A worker or node that dies is retried
    (``max_retries``); an exception inside a strategy is a failed trial (the trial catches it), never
    retried. Ctrl-C or SIGTERM cancels every trial in flight (recorded ``cancelled``) and stops the run.
    Each trial asks Ray for ``threads_per_trial`` CPUs (torch uses as many threads) and, on CUDA,
    ``gpus_per_trial`` GPUs.
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

    def task_options(self, config: Any) -> dict[str, Any]:
        """The resources and retries a trial's Ray task asks for."""
        gpus = self.gpus_per_trial if config.models.device.startswith("cuda") else 0
        return {"num_cpus": self.threads_per_trial, "num_gpus": gpus, "max_retries": self.max_retries, "retry_exceptions": False}

    def run(self, trials: Sequence[PlannedTrial], on_done: OnDone) -> None:
        import time

        # max_calls=0: Ray keeps a worker (and its loaded models) for any number of trials, GPU ones included
        remote = self.ray.remote(max_calls=0)(ray_trial)
        queue, in_flight = list(trials), {}

        def submit(planned: PlannedTrial) -> None:
            task = remote.options(**self.task_options(planned.config)).remote(
                planned.config.model_dump(mode="json"),
                planned.strategy,
                str(planned.artifact_dir),
                planned.variant,
                self.threads_per_trial,
                self.progress_bars,
                [member.model_dump(mode="json") for member in planned.members],
            )
            deadline = time.monotonic() + self.timeout_seconds if self.timeout_seconds else None
            in_flight[task] = (planned, deadline)

        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    submit(queue.pop(0))
                deadlines = [deadline for _, deadline in in_flight.values() if deadline is not None]
                wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=wait)
                for task in ready:
                    planned, _ = in_flight.pop(task)
                    on_done(planned, self._collect(task, planned))
                now = time.monotonic()
                for task, (planned, deadline) in list(in_flight.items()):
                    if deadline is not None and now >= deadline:
                        self.ray.cancel(task, force=True)
                        del in_flight[task]
                        on_done(
                            planned,
                            _stopped(planned, "timeout", "TrialTimeout", f"stopped after the {self.timeout_seconds:g} s trial time limit"),
                        )
        except KeyboardInterrupt:
            for task, (planned, _) in in_flight.items():
                self.ray.cancel(task, force=True)
                on_done(
                    planned,
                    _stopped(planned, "cancelled", "KeyboardInterrupt", "interrupted by the user or a SIGTERM (Ray task cancelled)"),
                )
            raise

    def _collect(self, task: Any, planned: PlannedTrial) -> TrialRecord:
        """The trial's record, or a failed one when Ray gave up on the task (worker died past its retries)."""
        from slmbench.records import TrialRecord

        try:
            return TrialRecord.model_validate(self.ray.get(task))
        except self.ray.exceptions.RayError as error:
            return _stopped(planned, "failed", type(error).__name__, f"{error} (after {self.max_retries} retries)")


def _stopped(planned: PlannedTrial, status: str, error_type: str, message: str) -> TrialRecord:
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
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
