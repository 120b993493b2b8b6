"""Carrying out a run: ``run_benchmark`` (``run_sweep`` for several tasks) plans it
(``slmbench.engine.planning``), writes ``run.json``, hands the trials that are not finished yet to an
executor (``slmbench.engine.executors``), writes each record as it arrives (this process is the only
writer), then renders the report.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from slmbench import records
from slmbench.engine.planning import PlannedTrial, RunPlan, member_trials, plan_run
from slmbench.engine.run_options import RunError, RunOptions
from slmbench.records import MemoryEstimate, TrialRecord
from slmbench.strategy.base import CombiningStrategy
from slmbench.strategy.registry import Registry

LOCK_FILE = ".slmbench.lock"
"""Held by the process that writes a run folder (``slmbench run``), in that folder."""


@dataclass
class RunResult:
    """Where a run went and which trials it ran now or reused from an earlier, matching run."""

    run_dir: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run; finished trials and the report are on disk."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"run interrupted; resume with: slmbench run --resume {result.run_dir}")
        self.result = result


# --- running --------------------------------------------------------------------------------------


def finished_record(planned: PlannedTrial) -> TrialRecord | None:
    """The trial's record on disk if it finished ``ok`` with exactly this config, else None."""
    if not planned.file.exists():
        return None
    try:
        record = records.read_trial(planned.file)
    except records.RecordError:
        return None
    return record if record.ok and record.config_hash == planned.config.config_hash() else None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_signals_handled_by(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM within the block, the previous handlers again after it; outside
    the main thread (where Python cannot handle signals) nothing changes."""
    try:
        previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt for the duration of a run.

    SIGINT included: a process started in the background by a non-interactive shell inherits SIGINT
    ignored, and Python then leaves it ignored, so Ctrl-C (or ``kill -INT``) would not stop the run.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    with _stop_signals_handled_by(interrupt):
        yield


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the report is written (a second interrupt must not leave half a
    report); a signal that arrived meanwhile is raised as KeyboardInterrupt at the end."""
    received: list[int] = []
    with _stop_signals_handled_by(lambda signum, frame: received.append(signum)):
        yield
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


def run_benchmark(
    options: RunOptions,
    registry: Registry,
    progress: Any,
    on_trial: Callable[[TrialRecord, bool], None] = lambda record, reused: None,
    constraints: Any = None,
    executor: Any = None,
    track: tuple[str, ...] = (),
    report_options: Any = None,
) -> RunResult:
    """One run (one task): ``run_sweep`` with a single set of options."""
    results, _ = run_sweep([options], registry, progress, on_trial, constraints, executor, track, report_options=report_options)
    return results[0]


def run_sweep(
    runs: list[RunOptions],
    registry: Registry,
    progress: Any,
    on_trial: Callable[[TrialRecord, bool], None] = lambda record, reused: None,
    constraints: Any = None,
    executor: Any = None,
    track: tuple[str, ...] = (),
    on_note: Callable[[str], None] = lambda line: None,
    report_options: Any = None,
) -> tuple[list[RunResult], Path | None]:
    """Run every planned trial of every run (task) that has not finished yet; write records and reports.

    Every run is planned (validated) before any trial starts. Trials already in a run folder with
    status ``ok`` and the same config are reused. All pending trials go to one executor (by default
    this process, one trial at a time), so a parallel executor overlaps the runs. On Ctrl-C or
    SIGTERM the running trials are recorded as ``cancelled``, the reports are rendered from what
    exists, and RunInterrupted is raised. Several runs also get a comparison, ``<output>/comparison.md``;
    its path is returned with the results.
    """
    plans = [plan_run(options, registry) for options in runs]
    folders = [plan.run_dir.resolve() for plan in plans]
    if len(set(folders)) < len(folders):
        raise RunError("two runs of the sweep would write the same run folder: list each task once")
    with ExitStack() as locks:
        for plan in plans:
            locks.enter_context(_only_writer(plan.run_dir))
        return _run_plans(plans, runs, registry, progress, on_trial, constraints, report_options, executor, track, on_note)


@contextmanager
def _only_writer(run_dir: Path) -> Iterator[None]:
    """Hold a lock on ``run_dir`` while this process writes it: a second run of the same folder fails at
    once instead of overwriting the trials the first one finishes (the OS releases it if the process dies)."""
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"{run_dir}: another slmbench run is writing this run folder; wait for it to finish or choose another --run-id"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _run_plans(
    plans: list[RunPlan],
    runs: list[RunOptions],
    registry: Registry,
    progress: Any,
    on_trial: Callable[[TrialRecord, bool], None],
    constraints: Any,
    report_options: Any,
    executor: Any,
    track: tuple[str, ...],
    on_note: Callable[[str], None],
) -> tuple[list[RunResult], Path | None]:
    """``run_sweep``'s work, with every run folder locked: the trials (each run's report rendered again
    after each), then the deployment and export checks, then the final reports."""
    from slmbench.engine.deployment_check import has_deployment_variants
    from slmbench.engine.executors import LocalExecutor
    from slmbench.engine.live_report import LiveReports

    results = {plan.run_dir: RunResult(plan.run_dir) for plan in plans}
    keeps = {plan.run_dir: plan.run.options is None or plan.run.options.keep_artifacts == "all" for plan in plans}
    checks = {plan.run_dir: plan.run.options is None or plan.run.options.deployment_check != "none" for plan in plans}
    pending = _write_runs(plans, results, on_trial)
    live = LiveReports(plans, pending, constraints, report_options, on_note)

    def finish(planned: PlannedTrial, record: TrialRecord) -> None:
        records.write_trial(planned.file, record, planned.run_dir)
        checked_later = checks[planned.run_dir] and has_deployment_variants(planned.strategy)  # then deleted after the check
        if planned.config.train_size is not None or not (keeps[planned.run_dir] or checked_later):
            shutil.rmtree(planned.artifact_dir, ignore_errors=True)  # learning-curve points keep measurements, not models
        result = results[planned.run_dir]
        (result.ran if record.ok else result.failed).append(planned.key)
        on_trial(record, False)
        _notify(registry, "trial_finished", track, trial=record, run_dir=planned.run_dir)
        live.trial_finished(planned)

    executor = executor or LocalExecutor(progress, runs[0].trial_timeout)
    interrupted = _run_trials(executor, pending, plans, finish)
    interrupted = interrupted or _check_deployments(plans, registry, constraints, executor, on_note, live)
    if not interrupted:  # the checks are done with the models this command trained for a run that keeps none
        for planned in pending:
            if not keeps[planned.run_dir]:
                shutil.rmtree(planned.artifact_dir, ignore_errors=True)
    interrupted = interrupted or _check_exports(plans, registry, constraints, keeps, on_note)
    interrupted = _render_reports(plans, registry, constraints, report_options, track) or interrupted
    comparison = _render_comparison(plans, runs[0].output)
    for result in results.values():
        result.interrupted = interrupted
    if interrupted:
        raise RunInterrupted(next(iter(results.values())))
    return list(results.values()), comparison


def _write_runs(plans: list[RunPlan], results: dict[Path, RunResult], on_trial: Callable[[TrialRecord, bool], None]) -> list[PlannedTrial]:
    """Write each run's record and test texts; return the trials still to run (finished ones are reused)."""
    pending = []
    for plan in plans:
        records.write_run(plan.run_dir, plan.run)
        records.write_test_texts(plan.run_dir, plan.test_texts)
        for planned in plan.trials:
            if (record := finished_record(planned)) is not None:
                results[plan.run_dir].reused.append(planned.key)
                on_trial(record, True)
            else:
                pending.append(planned)
    return pending


def _run_trials(
    executor: Any, pending: list[PlannedTrial], plans: list[RunPlan], finish: Callable[[PlannedTrial, TrialRecord], None]
) -> bool:
    """Run the pending trials on ``executor``, combining strategies last; True if Ctrl-C or SIGTERM stopped them."""
    with signals_as_interrupt():
        try:
            executor.run([planned for planned in pending if not issubclass(planned.strategy, CombiningStrategy)], finish)
            combining = [planned for planned in pending if issubclass(planned.strategy, CombiningStrategy)]
            for planned in combining:  # after the trials they combine, with their records
                plan = next(plan for plan in plans if plan.run_dir == planned.run_dir)
                planned.members = [record for member in member_trials(planned, plan.trials) if (record := finished_record(member))]
            executor.run(combining, finish)
        except KeyboardInterrupt:
            return True
    return False


def _check_deployments(
    plans: list[RunPlan], registry: Registry, constraints: Any, executor: Any, on_note: Callable[[str], None], live: Any
) -> bool:
    """The deployment check of each run (``--deployment-check``: the contenders by default), each trial's
    record rewritten with its checks and the run's report with it; True if Ctrl-C or SIGTERM stopped it
    (the trials checked so far keep their checks)."""
    from slmbench.engine.deployment_check import deployment_check

    for plan in plans:
        which = (plan.run.options.deployment_check if plan.run.options is not None else None) or "contenders"
        requests = plan.run.profile.latency_requests if plan.run.profile is not None else 20

        def checked(record: TrialRecord, run_dir: Path = plan.run_dir) -> None:
            on_note(f"deployment check: {record.name} seed {record.seed}, its quantized copies scored on the test split")
            live.render(run_dir)

        try:
            with signals_as_interrupt():
                deployment_check(plan.run_dir, registry.strategy, which, constraints, requests, executor, checked)
        except KeyboardInterrupt:
            return True
        except Exception as error:  # noqa: BLE001 - the deployment check never takes the run's report down
            on_note(f"deployment check failed, the report goes without it: {type(error).__name__}: {error}")
    return False


def _check_exports(
    plans: list[RunPlan], registry: Registry, constraints: Any, keeps: dict[Path, bool], on_note: Callable[[str], None]
) -> bool:
    """The export check of each run whose options ask for one (``--export-check``) and whose artifacts
    are kept; True if Ctrl-C or SIGTERM stopped it (the report is then rendered without it)."""
    from slmbench.engine.export_check import export_check

    for plan in plans:
        which = plan.run.options.export_check if plan.run.options is not None else "recommended"
        if which == "none" or not keeps[plan.run_dir]:
            (plan.run_dir / records.EXPORT_CHECKS).unlink(missing_ok=True)  # an earlier check is not this run's
            continue
        requests = plan.run.profile.latency_requests if plan.run.profile is not None else 20
        try:
            with signals_as_interrupt():
                export_check(plan.run_dir, registry.strategy, which, constraints, requests, on_note)
        except KeyboardInterrupt:
            return True
        except Exception as error:  # noqa: BLE001 - the check of exports never takes the run's report down
            (plan.run_dir / records.EXPORT_CHECKS).unlink(missing_ok=True)
            on_note(f"export check failed, the report goes without it: {type(error).__name__}: {error}")
    return False


def _render_reports(plans: list[RunPlan], registry: Registry, constraints: Any, report_options: Any, track: tuple[str, ...]) -> bool:
    """Render each run's report from what is on disk (under the user's ``constraints`` and ``report_options``);
    True if an interrupt arrived while one was written."""
    from slmbench.report.options import ReportOptions
    from slmbench.report.recommend import Constraints
    from slmbench.report.render import render_report

    interrupted = False
    for plan in plans:
        try:
            with interrupts_deferred():
                report = render_report(plan.run_dir, constraints or Constraints(), report_options or ReportOptions())
        except KeyboardInterrupt:  # an interrupt held while the report was written: the report is whole
            interrupted = True
        _notify(registry, "run_finished", track, run=plan.run, run_dir=plan.run_dir, report=report)
    return interrupted


def _render_comparison(plans: list[RunPlan], output: str) -> Path | None:
    """For several runs, their comparison, ``<output>/comparison.md``; None for one run."""
    if len(plans) < 2:
        return None
    from slmbench.report.compare import render_comparison

    comparison = Path(output) / "comparison.md"
    records.write_text(comparison, render_comparison([plan.run_dir for plan in plans]))
    return comparison


@dataclass
class DryRunTrial:
    """A trial ``--dry-run`` lists: whether it is done already, and its memory estimate or why there is none."""

    planned: PlannedTrial
    done: bool
    memory: MemoryEstimate | None
    no_memory_estimate: str | None = None
    prompt_format: str | None = None
    """The prompt format its causal LM will be prompted in (``describe_prompt_format``); None: it uses no causal LM."""


def dry_run(runs: list[RunOptions], registry: Registry) -> list[DryRunTrial]:
    """Every trial the runs would run, with whether it is already done (reused), the memory it is
    estimated to need (``Strategy.estimate_memory``, from the models' configs) and its prompt format
    (from the causal LM's tokenizer); nothing is written, no model is loaded."""
    formats: dict[tuple[str, str, bool], str] = {}  # one tokenizer load per causal LM and format
    return [_dry_run_trial(planned, formats) for options in runs for planned in plan_run(options, registry).trials]


def _dry_run_trial(planned: PlannedTrial, formats: dict[tuple[str, str, bool], str]) -> DryRunTrial:
    from slmbench.lm.models import SharedModel, SharedModels
    from slmbench.lm.prompt_format import describe_prompt_format

    done = finished_record(planned) is not None
    trial = DryRunTrial(planned, done, None)
    models = planned.config.models
    if SharedModel.CAUSAL_LM in planned.strategy.metadata.depends_on:
        key = (models.causal_lm, models.prompt_format, models.trust_remote_code)
        if key not in formats:
            load = partial(SharedModels.from_config(models).tokenizer, put_together=False)  # nothing built in a dry run
            formats[key], _ = describe_prompt_format(load, models.prompt_format, models.causal_lm)
        trial.prompt_format = formats[key]
    try:
        trial.memory = planned.strategy.estimate_memory(planned.memory_request())
    except Exception as error:  # noqa: BLE001 - a dry run lists every trial, whether its memory can be estimated or not
        trial.no_memory_estimate = f"{type(error).__name__}: {error}"
    return trial


def _notify(registry: Registry, hook: str, track: tuple[str, ...], **arguments: Any) -> None:
    """Call a tracking hook of every plugin, one at a time: a tracker's failure is a warning naming it,
    never the run's end, nor the other trackers'."""
    import warnings

    from slmbench.strategy.registry import hook_callers

    if registry.manager is None:  # a registry built by hand (tests) has no plugins to notify
        return
    for plugin, call in hook_callers(registry.manager, hook):
        try:
            call(track=track, **arguments)
        except Exception as error:  # noqa: BLE001 - trackers are optional
            warnings.warn(f"tracker plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}", stacklevel=2)
