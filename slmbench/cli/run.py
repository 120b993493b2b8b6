"""``slmbench run``: plan the runs from the arguments, a sweep file or a run folder, run them, and print
each trial as it ends and each run's leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.cli.console import printable, say
from slmbench.cli.exit_codes import EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from slmbench.cli.parser import constraints, report_options

if TYPE_CHECKING:
    from slmbench.engine.run_options import RunOptions
    from slmbench.engine.sweep import ExecutorSettings, SweepFile


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given on the command line (None where not given)."""
    return {
        "task": args.task,
        "strategies": args.strategies,
        "profile": args.profile,
        "data_dir": args.data_dir,
        "output": args.output,
        "seeds": args.seeds,
        "run_id": args.run_id,
        "device": args.device,
        "dtype": args.dtype,
        "prompt_format": args.prompt_format,
        "trust_remote_code": args.trust_remote_code,
        "trial_timeout": args.trial_timeout,
        "train_sizes": args.train_sizes,
        "tuning_trials": args.tuning_trials,
        "keep_artifacts": args.keep_artifacts,
        "export_check": args.export_check,
        "deployment_check": args.deployment_check,
        "models": [args.model] if args.model else None,
        "embedding_models": [args.embedding_model] if args.embedding_model else None,
        "allow_outside_data_dir": args.allow_outside_data_dir,
    }


def _executor_settings(args: argparse.Namespace, sweep: SweepFile) -> ExecutorSettings:
    """The sweep file's executor settings with those given on the command line, checked."""
    from slmbench.engine.sweep import ExecutorSettings

    given = {
        "type": args.executor,
        "workers": args.workers,
        "address": args.ray_address,
        "gpus_per_trial": args.gpus_per_trial,
        "threads_per_trial": args.threads_per_trial,
    }
    executor = sweep.executor.model_copy(update={key: value for key, value in given.items() if value is not None})
    ExecutorSettings.model_validate(executor.model_dump())
    return executor


def _sweep_defaults(sweep: SweepFile, settings: dict[str, Any]) -> dict[str, Any]:
    """What a sweep file sets for each of its runs (the command line's options override it)."""
    return {
        "strategies": ",".join(sweep.strategies) if isinstance(sweep.strategies, list) else sweep.strategies,
        "seeds": sweep.seeds,
        "train_sizes": sweep.train_sizes,
        "profile": sweep.profile,
        "models": sweep.models,
        "embedding_models": sweep.embedding_models,
        "data_dir": sweep.data_dir,
        "output": sweep.output,
        "trial_timeout": sweep.trial_timeout,
        "device": sweep.device,
        "dtype": sweep.dtype,
        "prompt_format": sweep.prompt_format,
        "options": {**sweep.grid(), **settings},
    }


def _run_options(args: argparse.Namespace) -> tuple[list[RunOptions], ExecutorSettings]:
    """The runs to do (one RunOptions per task) and the executor settings, from the arguments, a sweep
    file (``--config``) or a run folder (``--resume``); arguments given override the others."""
    from slmbench.common.options import group_assignments
    from slmbench.engine.run_options import RunError, RunOptions, options_from_run_dir
    from slmbench.engine.sweep import SweepFile, read_sweep

    given = _given(args)
    settings = {
        strategy: {name: [value] for name, value in values.items()} for strategy, values in group_assignments(args.settings).items()
    }
    if args.resume and (args.config or args.task):
        raise RunError("--resume continues one run folder: it cannot be combined with --task or --config")
    sweep = read_sweep(args.config) if args.config else SweepFile(tasks=[args.task or "-"])
    executor = _executor_settings(args, sweep)
    if args.resume:
        for name in ("output", "run_id"):
            if given.pop(name):
                raise RunError(f"--{name.replace('_', '-')} cannot be combined with --resume (the run folder fixes it)")
        resumed = options_from_run_dir(args.resume, **{k: v for k, v in given.items() if k != "task"})
        if settings:
            resumed.options = {**resumed.options, **settings}
        return [resumed], executor
    if not args.config and not args.task:
        raise RunError("slmbench run needs --task, --config SWEEP_YAML or --resume RUN_DIR")
    base = _sweep_defaults(sweep, settings)
    base.update({key: value for key, value in given.items() if value is not None and key != "task"})
    tasks = [args.task] if args.task else sweep.tasks
    return [RunOptions(task=task, **{key: value for key, value in base.items() if value is not None}) for task in tasks], executor


def _check_trackers(args: argparse.Namespace, registry) -> None:
    """Every ``--track`` names an installed tracker that has what it needs, or the run does not start."""
    from slmbench.engine.run_options import RunError

    unknown = [name for name in args.track if name not in registry.trackers]
    if unknown:
        from slmbench.common.text import did_you_mean

        known = sorted(registry.trackers)
        installed = ", ".join(known) or "none"
        raise RunError(f"--track {unknown[0]!r}: no such tracker{did_you_mean(unknown[0], known)} (installed: {installed})")
    for name in dict.fromkeys(args.track):
        if (check := registry.trackers[name].value.check) is not None:
            try:
                check()
            except Exception as error:  # noqa: BLE001 - whatever the tracker lacks, the run must not start
                raise RunError(f"--track {name}: {error}") from error


def _executor(settings, trial_timeout: float | None, progress):
    """The local or Ray executor that the executor settings ask for."""
    from slmbench.engine.executors import LocalExecutor, RayExecutor

    if settings.type == "local":
        return LocalExecutor(progress, trial_timeout)
    return RayExecutor(
        workers=settings.workers,
        address=settings.address,
        threads_per_trial=settings.threads_per_trial,
        gpus_per_trial=settings.gpus_per_trial,
        timeout_seconds=trial_timeout,
        progress_bars=progress.enabled,
    )


def _print_dry_run(runs, registry) -> None:
    """Each trial the runs would do, done or to run (stdout, tab-separated for scripts); on stderr the
    memory each is estimated to need beside the device's, the trials that will not fit with what would
    make them fit, each causal LM's prompt format, and a count."""
    from slmbench.engine.runner import dry_run
    from slmbench.lm.memory_estimate import DEVICE_MEMORY_ENV, USABLE_FRACTION

    trials = dry_run(runs, registry)
    for trial in trials:
        print(f"{'done' if trial.done else 'to run'}\t{trial.planned.run_dir}\t{trial.planned.key}")
    width = max((len(trial.planned.key) for trial in trials), default=0)
    device = None
    for trial in trials:
        memory = trial.memory
        if memory is not None and (memory.device, memory.device_memory_mb) != device:
            device = (memory.device, memory.device_memory_mb)
            offers = "unknown" if memory.device_memory_mb is None else f"{_size(memory.device_memory_mb)}, {USABLE_FRACTION:.0%} usable"
            print(f"memory estimates on {memory.device} ({offers}; set {DEVICE_MEMORY_ENV} to plan for another):", file=sys.stderr)
        print(f"  {trial.planned.key:<{width}}  {_memory_line(trial)}", file=sys.stderr)
        if memory is not None and memory.fits is False:
            for remedy in memory.remedies or ["a smaller model"]:
                print(f"  {'':<{width}}    would lower it: {remedy}", file=sys.stderr)
    for model, prompt_format in dict.fromkeys((t.planned.config.models.causal_lm, t.prompt_format) for t in trials if t.prompt_format):
        print(f"prompt format of {model}: {prompt_format}", file=sys.stderr)
    pending = sum(not trial.done for trial in trials)
    too_big = sum(trial.memory is not None and trial.memory.fits is False for trial in trials)
    will_not_fit = f", {too_big} will not fit" if too_big else ""
    print(f"{len(trials)} trials: {pending} to run, {len(trials) - pending} done{will_not_fit}", file=sys.stderr)


def _memory_line(trial) -> str:
    """``12.3 GiB  fits  weights 4.0 GiB, gradients ...``: the peak, whether it fits, and its parts."""
    memory = trial.memory
    if memory is None:
        return f"no estimate ({trial.no_memory_estimate})"
    parts = {
        "weights": memory.weights_mb,
        "gradients": memory.gradients_mb,
        "optimizer": memory.optimizer_mb,
        "activations": memory.activations_mb,
        "shared models": memory.shared_models_mb,
    }
    breakdown = ", ".join(f"{name} {_size(mb)}" for name, mb in parts.items() if mb >= 0.5)
    verdict = {True: "fits", False: "WILL NOT FIT", None: ""}[memory.fits]
    if memory.applied:
        verdict += f" with {', '.join(memory.applied)} (set by slmbench)"
    return f"{_size(memory.total_mb):>9}  {verdict:<12}  {breakdown or 'no model'}"


def _size(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def _print_trial(record, reused: bool, console) -> None:
    """One line for a trial that just ended: its scores and times, or its error."""
    from rich.text import Text

    name = record.name + (f" seed {record.seed}" if record.config else "")
    name += "" if record.train_size is None else f" ({record.train_size} train examples)"
    if record.ok:
        metrics, cost = record.metrics, record.cost
        line = (
            f" {name}: accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}, "
            f"train {cost.train_seconds:.1f} s, predict {cost.predict_seconds:.1f} s"
        )
        console.print(Text.assemble(("ok", "green"), " (reused)" if reused else "", printable(line)))
    else:
        error = record.error
        first_line = error.message.splitlines()[0] if error and error.message.strip() else ""
        console.print(Text.assemble((record.status, "red"), printable(f" {name}: {error.type if error else ''}: {first_line}")))


def _summary_table(run_dir: Path):
    """The run's leaderboard entries as a rich table, read back from the records."""
    from rich.table import Table
    from rich.text import Text

    from slmbench.report.summary import load_summary

    summary = load_summary(run_dir)
    table = Table("strategy", "seeds", "accuracy", "macro-F1", "train s", "ms/example", "peak MiB", title=Text(printable(run_dir)))
    table.columns[0].overflow = "fold"  # a name is folded onto more lines, never cut
    for entry in summary.entries:
        cells = [
            entry.accuracy,
            entry.macro_f1,
            entry.cost("train_seconds"),
            entry.cost("latency_ms_per_example"),
            entry.cost("peak_memory_mb"),
        ]
        table.add_row(
            Text(printable(entry.name)), str(len(entry.trials)), *("" if c is None else f"{c:.3f}" if c < 1 else f"{c:,.1f}" for c in cells)
        )
    for file in summary.failures:
        table.add_row(
            Text(printable(file.record.name if file.record else file.file)), "", file.record.status if file.record else "unreadable"
        )
    return table


def _finish(results, comparison, console) -> int:
    """Print each run's leaderboard and report path and the comparison; the exit code the failures call for."""
    from rich.console import Console

    for result in results:
        Console(stderr=True).print(_summary_table(result.run_dir))
        print(result.run_dir / "report.md")
    if comparison is not None:
        print(comparison)
    failed = sum(len(result.failed) for result in results)
    if failed:
        total = failed + sum(len(result.ran) for result in results)
        where = "the report's Failures" if len(results) == 1 else "the reports' Failures"
        if total == failed and not any(result.reused for result in results):
            say(console, "red", "every trial failed", f"{failed} of {total} trials failed: see {where}")
            return EXIT_ALL_FAILED
        say(console, "red", "finished with failures", f"{failed} of {total} trials run now failed: see {where}")
        return EXIT_SOME_FAILED
    return EXIT_OK


def run_command(args: argparse.Namespace, registry, console) -> int:
    """``slmbench run`` (or its ``--dry-run``); returns the exit code. While it runs: a line per trial, and
    the leaderboard so far, live above the progress bars in a terminal, else as a line after each trial."""
    from contextlib import nullcontext

    from rich.text import Text

    from slmbench.cli.leaderboard import LiveLeaderboard
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.runner import RunInterrupted, run_sweep

    _check_trackers(args, registry)
    runs, settings = _run_options(args)
    if args.dry_run:
        _print_dry_run(runs, registry)
        return EXIT_OK
    board = LiveLeaderboard()
    live = not args.no_progress and console.is_terminal  # else: the leaderboard as a plain line after each trial
    progress = ProgressReporter(enabled=not args.no_progress)

    def trial_ended(record, reused: bool) -> None:
        _print_trial(record, reused, console)
        board.add(record)
        if not live:
            console.print(Text(board.line(), style="dim"))

    try:
        with progress.live(board.table, console) if live else nullcontext():
            results, comparison = run_sweep(
                runs,
                registry,
                progress,
                on_trial=trial_ended,
                on_note=lambda line: say(console, "cyan", "note", line),
                constraints=constraints(args),
                report_options=report_options(args),
                executor=_executor(settings, runs[0].trial_timeout, progress),
                track=tuple(args.track),
            )
    except RunInterrupted as interrupted:
        say(console, "yellow", "interrupted", str(interrupted))
        return EXIT_INTERRUPTED
    return _finish(results, comparison, console)
