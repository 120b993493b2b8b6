"""The ``slmbench`` command line. Heavy libraries load only inside the command that needs them.

Exit codes: 0 every trial ok (or the command succeeded); 1 the run finished but some trials failed;
2 bad input (nothing was run); 3 every trial of the run failed; 130 interrupted (finished trials and
the report are kept). Errors are one line naming the file or argument at fault; ``--debug`` adds the
traceback. Text from files and arguments is printed literally: no rich markup is read in it, and
control characters are shown as escapes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from slmbench.lm.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.tasks.profiles import PROFILES

EXIT_OK, EXIT_SOME_FAILED, EXIT_INPUT, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _int_list(what: str, allow_all: bool = False):
    def parse(value: str) -> list[int]:
        from slmbench.engine.planning import RunError, parse_int_list

        try:
            return parse_int_list(value, what, allow_all)
        except RunError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _positive(kind: type):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a {kind.__name__}") from None
        if not number > 0 or number != number or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{value!r} must be a positive, finite number")
        return number

    return parse


_OUTSIDE_HELP = ("let the task read a data file outside --data-dir and the task file's folder "
                 "(an absolute or '..' source.file, a local folder as source.hub.path)")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--strict-plugins", action="store_true", default=argparse.SUPPRESS,
                        help="fail when any plugin fails to load (default: warn and go on)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    parser = argparse.ArgumentParser(
        prog="slmbench", description="Decide how to adapt a small language model to a task, with measurements.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    constraints = argparse.ArgumentParser(add_help=False)
    group = constraints.add_argument_group("constraints on the recommended strategy")
    group.add_argument("--max-train-minutes", type=_positive(float), metavar="MIN")
    group.add_argument("--max-latency-ms", type=_positive(float), metavar="MS",
                       help="p95 latency of a single request (batched latency per example where not measured)")
    group.add_argument("--max-memory-mb", type=_positive(float), metavar="MB", help="peak memory")
    group.add_argument("--max-labelled-examples", type=_positive(int), metavar="N")

    def add_command(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common, *parents])

    run = add_command("run", "run strategies on a task and write trials and a report", constraints)
    run.add_argument("--task", help="a registered task name or a task YAML path (required unless --resume)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run folder: rerun only failed or missing trials")
    run.add_argument("--strategies", help="'all' or a comma-separated list (default: all)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="STRATEGY.OPTION=VALUE",
                     help="set a strategy option, e.g. --set lora.r=8 (repeatable; `slmbench show STRATEGY` lists them)")
    run.add_argument("--profile", choices=list(PROFILES), help="budget (default: quick)")
    run.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    run.add_argument("--allow-outside-data-dir", action="store_true", help=_OUTSIDE_HELP)
    run.add_argument("--output", help="output folder (default: runs)")
    run.add_argument("--seeds", type=_int_list("--seeds"), metavar="N,N,...",
                     help="run every trial once per seed, e.g. 0,1,2 (default: 0)")
    run.add_argument("--seed", dest="seeds", type=_int_list("--seed"), help=argparse.SUPPRESS)
    run.add_argument("--run-id", help="name of the run folder (default: the profile, so rerunning a command resumes it)")
    run.add_argument("--model", help=f"causal LM: embedded name, hub id or folder (default: {EMBEDDED_CAUSAL_LM})")
    run.add_argument("--embedding-model", help=f"sentence-transformers model (default: {EMBEDDED_EMBEDDING_MODEL})")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    run.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    run.add_argument("--trust-remote-code", action="store_true", default=None, help="allow model code from the hub to run")
    run.add_argument("--trial-timeout", type=_positive(float), metavar="SECONDS", help="stop a trial that runs longer (status timeout)")
    run.add_argument("--train-sizes", metavar="N,N,...", type=_int_list("--train-sizes", allow_all=True),
                     help="learning curve: also run each strategy on nested subsets of this many train examples, e.g. 16,64,256,all")
    run.add_argument("--tuning-trials", type=_positive(int), metavar="N",
                     help="option settings every strategy may try, chosen on validation (default: the profile's; 1: defaults only)")
    run.add_argument("--track", action="append", default=[], metavar="TRACKER",
                     help="send trials and the report to an experiment tracker, e.g. mlflow (`slmbench list trackers`)")
    run.add_argument("--config", type=Path, metavar="SWEEP_YAML",
                     help="a sweep file: tasks, strategies, option grids, seeds, models... (arguments given here override it)")
    run.add_argument("--dry-run", action="store_true", help="list the trials the command would run and which are done; run nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    execution = run.add_argument_group("execution")
    execution.add_argument("--executor", choices=["local", "ray"], help="local: one trial after another (default); ray: parallel Ray tasks")
    execution.add_argument("--workers", type=_positive(int), metavar="N", help="ray: trials in parallel (default: CPUs / threads per trial)")
    execution.add_argument("--ray-address", metavar="auto|HOST:PORT", help="ray: join this cluster (default: start a local instance)")
    execution.add_argument("--gpus-per-trial", type=_positive(float), metavar="G", help="ray on CUDA: GPUs per trial, fractions allowed (default 1)")
    execution.add_argument("--threads-per-trial", type=_positive(int), metavar="T", help="ray: CPU threads per trial (default: CPUs / workers)")

    listing = add_command("list", "list registered strategies, tasks, plugins or trackers")
    listing.add_argument("what", choices=["strategies", "tasks", "plugins", "trackers"])
    listing.add_argument("--options", action="store_true", help="with strategies: every option of each")
    listing.add_argument("--format", choices=["table", "text", "json"],
                         help="default: a table on a terminal, plain text (one line each, nothing cut) otherwise")

    show = add_command("show", "describe a strategy and every option it accepts")
    show.add_argument("strategy")
    show.add_argument("--format", choices=["text", "json"], default="text")

    validate = add_command("validate", "check a task YAML and its data without running anything")
    validate.add_argument("task", help="a task YAML path or a registered task name")
    validate.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    validate.add_argument("--allow-outside-data-dir", action="store_true", help=_OUTSIDE_HELP)
    validate.add_argument("--model", default=EMBEDDED_CAUSAL_LM,
                          help="check the verbalizers against this causal LM's tokenizer ('' to skip)")

    report = add_command("report", "render a run folder's report, or export its records", constraints)
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument("--format", choices=["md", "json", "csv"], default="md",
                        help="md: write report.md (default); json: the typed records; csv: one row per trial")
    report.add_argument("--compare", action="store_true", help="one comparison of several runs (tasks): strategy x task, mean rank")
    report.add_argument("--output", type=Path, metavar="FILE", help="write json, csv or the comparison here instead of stdout")
    return parser


def _error_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: object) -> str:
    """``value`` as text whose control characters (ESC, BEL...; not newline or tab) are shown as escapes."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(value))


def _say(console, style: str, prefix: str, message: str) -> None:
    """Print ``prefix: message`` with the prefix styled and the message literal (no markup is read)."""
    from rich.text import Text

    console.print(Text.assemble((prefix, style), ": ", _printable(message)))


def _origin(item) -> str:
    """Where a registered strategy or task came from: its distribution, else its plugin's name."""
    return item.distribution or f"plugin {item.plugin}"


def _strategy_info(name: str, item) -> dict:
    from slmbench.common.options import describe_options

    cls = item.value
    return {
        "name": name, "family": cls.family.value, "from": _origin(item), "description": cls.description,
        "uses_models": list(cls.uses_models), "options": [option.to_dict() for option in describe_options(cls.Options)],
        "searched": {option: list(spec) for option, spec in cls.tune.items()},
    }


def _rows(what: str, registry) -> tuple[list[str], list[list[str]]]:
    if what == "strategies":
        return ["strategy", "family", "from", "description"], [
            [name, item.value.family.value, _origin(item), item.value.description] for name, item in sorted(registry.strategies.items())
        ]
    if what == "tasks":
        return ["task", "from", "file"], [[name, _origin(item), str(item.value)] for name, item in sorted(registry.tasks.items())]
    if what == "trackers":
        return ["tracker", "from", "description"], [
            [name, _origin(item), item.value.description] for name, item in sorted(registry.trackers.items())
        ]
    rows = [[name, distribution, "loaded"] for name, distribution in sorted(registry.plugins.items())]
    rows += [[failure.plugin, "", f"failed: {failure.error}"] for failure in registry.failures]
    return ["plugin", "distribution", "status"], rows


def _list(args, registry) -> None:
    import json

    if args.what == "strategies" and args.format == "json":
        print(json.dumps([_strategy_info(name, item) for name, item in sorted(registry.strategies.items())], indent=1))
        return
    headers, rows = _rows(args.what, registry)
    if args.format == "json":
        print(json.dumps([dict(zip(headers, row)) for row in rows], indent=1))
        return
    form = args.format or ("table" if sys.stdout.isatty() else "text")
    if form == "text":
        for row in rows:
            print("\t".join(" ".join(str(cell).split()) for cell in row))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers)
        for row in rows:
            table.add_row(*(Text(_printable(cell)) for cell in row))
        Console(highlight=False).print(table)
    if args.options and args.what == "strategies":
        for name, item in sorted(registry.strategies.items()):
            print()
            _print_options(name, item, indent="  ")


def _print_options(name: str, item, indent: str = "") -> None:
    info = _strategy_info(name, item)
    print(f"{name} options:" if info["options"] else f"{name}: no options")
    for option in info["options"]:
        allowed = f"; allowed: {option['allowed']}" if option["allowed"] else ""
        spec = info["searched"].get(option["name"])
        searched = f"; searched on validation: {spec[0]} {', '.join(map(str, spec[1:]))}" if spec else ""
        print(f"{indent}{option['name']} ({option['type']}, default {option['default']!r}{allowed}{searched}): {option['description']}")


def _show(args, registry) -> None:
    import json

    item = registry.strategies.get(args.strategy)
    if item is None:
        registry.strategy(args.strategy)  # UnknownName with a "did you mean"
    if args.format == "json":
        print(json.dumps(_strategy_info(args.strategy, item), indent=1))
        return
    info = _strategy_info(args.strategy, item)
    print(f"{info['name']} ({info['family']}, from {info['from']}): {info['description']}")
    print(f"shared models: {', '.join(info['uses_models']) or 'none'}")
    _print_options(args.strategy, item, indent="  ")


def _print_trial(record, reused: bool, console) -> None:
    from rich.text import Text

    name = record.name + (f" seed {record.seed}" if record.config else "")
    name += "" if record.train_size is None else f" ({record.train_size} train examples)"
    if record.ok:
        metrics, cost = record.metrics, record.cost
        line = (f" {name}: accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}, "
                f"train {cost.train_seconds:.1f} s, predict {cost.predict_seconds:.1f} s")
        console.print(Text.assemble(("ok", "green"), " (reused)" if reused else "", _printable(line)))
    else:
        error = record.error
        first_line = error.message.splitlines()[0] if error and error.message.strip() else ""
        console.print(Text.assemble((record.status, "red"), _printable(f" {name}: {error.type if error else ''}: {first_line}")))


def _summary_table(run_dir: Path):
    """The run's leaderboard entries as a rich table, read back from the records."""
    from rich.table import Table
    from rich.text import Text

    from slmbench.report.summary import load_summary

    summary = load_summary(run_dir)
    table = Table("strategy", "seeds", "accuracy", "macro-F1", "train s", "ms/example", "peak MiB", title=Text(_printable(run_dir)))
    table.columns[0].overflow = "fold"  # a name is folded onto more lines, never cut
    for entry in summary.entries:
        cells = [entry.accuracy, entry.macro_f1, entry.cost("train_seconds"), entry.cost("latency_ms_per_example"),
                 entry.cost("peak_memory_mb")]
        table.add_row(Text(_printable(entry.name)), str(len(entry.trials)),
                      *("" if c is None else f"{c:.3f}" if c < 1 else f"{c:,.1f}" for c in cells))
    for file in summary.failures:
        table.add_row(Text(_printable(file.record.name if file.record else file.file)), "",
                      file.record.status if file.record else "unreadable")
    return table


def _constraints(args):
    from slmbench.report.recommend import Constraints

    return Constraints(
        max_train_minutes=args.max_train_minutes,
        max_latency_ms=args.max_latency_ms,
        max_memory_mb=args.max_memory_mb,
        max_labelled_examples=args.max_labelled_examples,
    )


def _run_options(args) -> tuple[list, object]:
    """The runs to do (one RunOptions per task) and the executor settings, from the arguments, a sweep
    file (``--config``) or a run folder (``--resume``); arguments given override the others."""
    from slmbench.common.options import group_assignments
    from slmbench.engine.planning import RunError, RunOptions, options_from_run_dir
    from slmbench.engine.sweep import ExecutorSettings, SweepFile, read_sweep

    given = {
        "task": args.task, "strategies": args.strategies, "profile": args.profile, "data_dir": args.data_dir,
        "output": args.output, "seeds": args.seeds, "run_id": args.run_id, "device": args.device, "dtype": args.dtype,
        "trust_remote_code": args.trust_remote_code, "trial_timeout": args.trial_timeout, "train_sizes": args.train_sizes,
        "tuning_trials": args.tuning_trials,
        "models": [args.model] if args.model else None,
        "embedding_models": [args.embedding_model] if args.embedding_model else None,
        "allow_outside_data_dir": args.allow_outside_data_dir,
    }
    settings = {strategy: {name: [value] for name, value in values.items()} for strategy, values in group_assignments(args.settings).items()}
    if args.resume and (args.config or args.task):
        raise RunError("--resume continues one run folder: it cannot be combined with --task or --config")
    sweep = read_sweep(args.config) if args.config else SweepFile(tasks=[args.task or "-"])
    executor = sweep.executor.model_copy(update={key: value for key, value in {
        "type": args.executor, "workers": args.workers, "address": args.ray_address,
        "gpus_per_trial": args.gpus_per_trial, "threads_per_trial": args.threads_per_trial}.items() if value is not None})
    ExecutorSettings.model_validate(executor.model_dump())
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
    base = {
        "strategies": ",".join(sweep.strategies) if isinstance(sweep.strategies, list) else sweep.strategies,
        "seeds": sweep.seeds, "train_sizes": sweep.train_sizes, "profile": sweep.profile, "models": sweep.models,
        "embedding_models": sweep.embedding_models, "data_dir": sweep.data_dir, "output": sweep.output,
        "trial_timeout": sweep.trial_timeout, "device": sweep.device, "dtype": sweep.dtype,
        "options": {**sweep.grid(), **settings},
    }
    base.update({key: value for key, value in given.items() if value is not None and key != "task"})
    tasks = [args.task] if args.task else sweep.tasks
    return [RunOptions(task=task, **{key: value for key, value in base.items() if value is not None}) for task in tasks], executor


def _executor(settings, trial_timeout: float | None, progress):
    from slmbench.engine.executors import LocalExecutor, RayExecutor

    if settings.type == "local":
        return LocalExecutor(progress, trial_timeout)
    return RayExecutor(workers=settings.workers, address=settings.address, threads_per_trial=settings.threads_per_trial,
                       gpus_per_trial=settings.gpus_per_trial, timeout_seconds=trial_timeout, progress_bars=progress.enabled)


def _print_dry_run(runs, registry) -> None:
    from slmbench.engine.runner import dry_run

    trials = dry_run(runs, registry)
    for planned, done in trials:
        print(f"{'done' if done else 'to run'}\t{planned.run_dir}\t{planned.key}")
    pending = sum(not done for _, done in trials)
    print(f"{len(trials)} trials: {pending} to run, {len(trials) - pending} done", file=sys.stderr)


def _run(args, registry, console) -> int:
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.planning import RunError
    from slmbench.engine.runner import RunInterrupted, run_sweep

    unknown = [name for name in args.track if name not in registry.trackers]
    if unknown:
        from slmbench.common.names import did_you_mean

        known = sorted(registry.trackers)
        raise RunError(f"--track {unknown[0]!r}: no such tracker{did_you_mean(unknown[0], known)} (installed: {', '.join(known) or 'none'})")
    for name in dict.fromkeys(args.track):
        if (check := registry.trackers[name].value.check) is not None:
            try:
                check()
            except Exception as error:  # noqa: BLE001 - whatever the tracker lacks, the run must not start
                raise RunError(f"--track {name}: {error}") from error
    runs, settings = _run_options(args)
    if args.dry_run:
        _print_dry_run(runs, registry)
        return EXIT_OK
    progress = ProgressReporter(enabled=not args.no_progress)
    try:
        results, comparison = run_sweep(
            runs, registry, progress,
            on_trial=lambda record, reused: _print_trial(record, reused, console),
            constraints=_constraints(args), executor=_executor(settings, runs[0].trial_timeout, progress), track=tuple(args.track),
        )
    except RunInterrupted as interrupted:
        _say(console, "yellow", "interrupted", str(interrupted))
        return EXIT_INTERRUPTED
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
            _say(console, "red", "every trial failed", f"{failed} of {total} trials failed: see {where}")
            return EXIT_ALL_FAILED
        _say(console, "red", "finished with failures", f"{failed} of {total} trials run now failed: see {where}")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _check_report_output(args) -> None:
    """``--output`` names a file to write, for what goes to stdout otherwise."""
    import os

    from slmbench.common.files import folder_problem
    from slmbench.engine.planning import RunError

    if args.output is None:
        return
    if args.format == "md" and not args.compare:
        raise RunError("--output: a markdown report is written into its run folder; --output is for --format json or csv, or --compare")
    problem = "is a folder" if os.path.isdir(args.output) else folder_problem(args.output.parent)
    if problem:
        raise RunError(f"--output {args.output}: {problem}")


def _report(args) -> None:
    from slmbench.records import write_text
    from slmbench.report import exports
    from slmbench.report.render import render_report

    _check_report_output(args)
    if args.compare:
        from slmbench.report.compare import render_comparison

        output = render_comparison(args.run_dirs)
    elif args.format == "md":
        for run_dir in args.run_dirs:
            print(render_report(run_dir, _constraints(args)))
        return
    else:
        output = exports.export(args.run_dirs, args.format)
    if args.output:
        write_text(args.output, output)
        print(args.output)
    else:
        sys.stdout.write(output)


def _validate(args, registry, console) -> None:
    import os

    from slmbench.engine.planning import RunError, resolve_task_path
    from slmbench.tasks.spec import load_task
    from slmbench.tasks.splits import resolve_data_dir, validate

    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise RunError(f"--data-dir {data_dir}: not a folder")
    path = resolve_task_path(args.task, registry)
    print(validate(path, data_dir, allow_outside=args.allow_outside_data_dir))
    if args.model:
        from transformers import AutoTokenizer

        from slmbench.lm.models import resolve_causal_lm
        from slmbench.lm.prompts import verbalizer_warnings

        tokenizer = AutoTokenizer.from_pretrained(resolve_causal_lm(args.model))
        for warning in verbalizer_warnings(load_task(path), tokenizer):
            _say(console, "yellow", "warning", warning)


def _known_errors() -> tuple[type[BaseException], ...]:
    from slmbench.common.options import OptionError
    from slmbench.engine.planning import RunError
    from slmbench.lm.models import ModelError
    from slmbench.records import RecordError
    from slmbench.strategy.registry import UnknownName
    from slmbench.tasks.spec import TaskError

    return TaskError, UnknownName, RecordError, RunError, OptionError, ModelError


def main(argv: list[str] | None = None, extra_plugins: dict[str, object] | None = None) -> int:
    """Run the CLI; ``extra_plugins`` (name -> plugin object) are registered beside installed ones."""
    args = _parser().parse_args(argv)
    console = _error_console()
    debug = getattr(args, "debug", False)
    from pydantic import ValidationError

    try:
        from slmbench.strategy.registry import PluginError, load_registry

        registry = load_registry(strict=getattr(args, "strict_plugins", False), extra_plugins=extra_plugins)
        for failure in registry.failures:
            _say(console, "yellow", "warning", f"plugin {failure.plugin} was not loaded: {failure.error}")
        if args.command == "run":
            return _run(args, registry, console)
        if args.command == "list":
            _list(args, registry)
        elif args.command == "show":
            _show(args, registry)
        elif args.command == "validate":
            _validate(args, registry, console)
        else:
            _report(args)
        return EXIT_OK
    except KeyboardInterrupt:
        _say(console, "yellow", "interrupted", "stopped by the user")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `slmbench list | head`
        return EXIT_OK
    except (PluginError, ValidationError, *_known_errors()) as error:
        if debug:
            console.print_exception()
        message = error.args[0] if error.args else str(error)
        _say(console, "red", "error", str(message))
        return EXIT_INPUT
    except OSError as error:  # a file that cannot be written: disk full, no permission
        if debug:
            console.print_exception()
        _say(console, "red", "error", f"{error.filename}: {error.strerror or error}" if error.filename else str(error))
        return EXIT_INPUT
    except Exception as error:  # noqa: BLE001 - a bug must still end with one clear line
        if debug:
            console.print_exception()
        _say(console, "red", "internal error", f"{type(error).__name__}: {error} (rerun with --debug for the traceback)")
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
