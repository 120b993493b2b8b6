"""The ``slmbench`` command line. Heavy libraries load only inside the command that needs them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmbench.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.profiles import PROFILES


def _train_sizes(text: str) -> str:
    """``--train-sizes`` checked when parsed, kept as given (it is stored in run.json)."""
    from slmbench.runner import parse_train_sizes

    try:
        parse_train_sizes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--strict-plugins",
        action="store_true",
        default=argparse.SUPPRESS,
        help="fail when any plugin fails to load (default: warn and go on)",
    )
    parser = argparse.ArgumentParser(
        prog="slmbench",
        description="Decide how to adapt a small language model to a task, with measurements.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    constraints = argparse.ArgumentParser(add_help=False)
    group = constraints.add_argument_group("constraints on the recommended strategy")
    group.add_argument("--max-train-minutes", type=float, metavar="MIN")
    group.add_argument("--max-latency-ms", type=float, metavar="MS", help="per test example")
    group.add_argument("--max-memory-mb", type=float, metavar="MB", help="peak memory")
    group.add_argument("--max-labelled-examples", type=int, metavar="N")

    def add_command(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common, *parents])

    run = add_command("run", "run strategies on a task and write trials and a report", constraints)
    run.add_argument("--task", help="a registered task name or a task YAML path (required unless --resume)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run folder: rerun only failed or missing trials")
    run.add_argument("--strategies", default="all", help="'all' or a comma-separated list (default: all)")
    run.add_argument("--profile", default="quick", choices=list(PROFILES), help="budget (default: quick)")
    run.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    run.add_argument("--output", default="runs", help="output folder (default: runs)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--run-id", help="name of the run folder (default: <profile>-seed<seed>, so rerunning a command resumes it)"
    )
    run.add_argument("--model", default=EMBEDDED_CAUSAL_LM, help="causal LM: embedded name, hub id or folder")
    run.add_argument(
        "--embedding-model", default=EMBEDDED_EMBEDDING_MODEL, help="sentence-transformers model: embedded name, hub id or folder"
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    run.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub to run")
    run.add_argument("--trial-timeout", type=float, metavar="SECONDS", help="stop a trial that runs longer (status timeout)")
    run.add_argument(
        "--train-sizes",
        metavar="N,N,...",
        type=_train_sizes,
        help="learning curve: also run each strategy on nested subsets of this many train examples, e.g. 16,64,256,all",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")

    listing = add_command("list", "list registered strategies, tasks or plugins")
    listing.add_argument("what", choices=["strategies", "tasks", "plugins"])

    validate = add_command("validate", "check a task YAML and its data without running anything")
    validate.add_argument("task", help="a task YAML path or a registered task name")
    validate.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")

    report = add_command("report", "render report.md from a run folder's trial JSONs", constraints)
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument(
        "--compare", type=Path, metavar="OUTPUT_MD", help="write one comparison of several runs (tasks) to this file"
    )
    return parser


def _warn_plugin_failures(registry, console) -> None:
    for failure in registry.failures:
        console.print(f"[yellow]warning:[/] plugin [bold]{failure.plugin}[/] was not loaded: {failure.error}")


def _origin(item) -> str:
    """Where a registered strategy or task came from: its distribution, else its plugin's name."""
    return item.distribution or f"plugin {item.plugin}"


def _list(what: str, registry, console) -> None:
    from rich.table import Table

    if what == "strategies":
        table = Table("strategy", "family", "from", "description")
        for name, item in sorted(registry.strategies.items()):
            table.add_row(name, item.value.family.value, _origin(item), item.value.description)
    elif what == "tasks":
        table = Table("task", "from", "file")
        for name, item in sorted(registry.tasks.items()):
            table.add_row(name, _origin(item), str(item.value))
    else:
        table = Table("plugin", "distribution", "status")
        for name, distribution in sorted(registry.plugins.items()):
            table.add_row(name, distribution, "loaded")
        for failure in registry.failures:
            table.add_row(failure.plugin, "", f"[red]failed:[/] {failure.error}")
    console.print(table)


def _trial_name(record: dict) -> str:
    size = record["config"].get("train_size")
    return record["strategy"] + ("" if size is None else f" ({size} train examples)")


def _print_trial(record: dict, reused: bool, console) -> None:
    if record["status"] == "ok":
        metrics, cost = record["metrics"], record["cost"]
        console.print(
            f"[green]ok[/]{' (reused)' if reused else ''} {_trial_name(record)}: accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f}, train {cost['train_seconds']:.1f} s, "
            f"predict {cost['predict_seconds']:.1f} s"
        )
    else:
        error = record["error"]
        first_line = error["message"].splitlines()[0] if error["message"] else ""
        console.print(f"[red]{record['status']}[/] {_trial_name(record)}: {error['type']}: {first_line}")


def _summary_table(run_dir: Path):
    """The run's trials as a rich table, read back from the trial JSONs."""
    import json

    from rich.table import Table

    table = Table("strategy", "status", "accuracy", "macro-F1", "train s", "ms/example", "peak MB", title=str(run_dir))
    trials = [json.loads(path.read_text()) for path in sorted((run_dir / "trials").glob("*.json"))]
    for trial in sorted(trials, key=lambda t: -t.get("metrics", {}).get("accuracy", -1)):
        metrics, cost = trial.get("metrics") or {}, trial.get("cost") or {}
        cells = [metrics.get("accuracy"), metrics.get("macro_f1"), cost.get("train_seconds"),
                 cost.get("latency_ms_per_example"), cost.get("peak_memory_mb")]
        table.add_row(trial["strategy"], trial["status"], *("" if c is None else f"{c:.3f}" if c < 1 else f"{c:,.1f}" for c in cells))
    return table


def _constraints(args):
    from slmbench.report import Constraints

    return Constraints(
        max_train_minutes=args.max_train_minutes,
        max_latency_ms=args.max_latency_ms,
        max_memory_mb=args.max_memory_mb,
        max_labelled_examples=args.max_labelled_examples,
    )


def _run(args, registry, console) -> int:
    from slmbench.progress import ProgressReporter
    from slmbench.runner import RunInterrupted, RunOptions, options_from_run_dir, run_benchmark

    given = {k: v for k, v in vars(args).items() if k in RunOptions.__dataclass_fields__}
    if args.resume:
        options = options_from_run_dir(args.resume, trial_timeout=args.trial_timeout, train_sizes=args.train_sizes)
    elif args.task:
        options = RunOptions(**given)
    else:
        console.print("[red]error:[/] slmbench run needs --task (or --resume RUN_DIR)")
        return 2
    try:
        result = run_benchmark(
            options,
            registry,
            ProgressReporter(enabled=not args.no_progress),
            on_trial=lambda record, reused: _print_trial(record, reused, console),
            constraints=_constraints(args),
        )
    except RunInterrupted as interrupted:
        console.print(f"[yellow]{interrupted}[/]")
        return 130
    console.print(_summary_table(result.run_dir))
    print(result.run_dir / "report.md")
    return 0


def main(argv: list[str] | None = None, extra_plugins: dict[str, object] | None = None) -> int:
    """Run the CLI; ``extra_plugins`` (name -> plugin object) are registered beside installed ones."""
    args = _parser().parse_args(argv)
    from rich.console import Console

    from slmbench.plugins import PluginError, UnknownName, load_registry
    from slmbench.tasks import TaskError

    console = Console(stderr=True)
    try:
        registry = load_registry(strict=getattr(args, "strict_plugins", False), extra_plugins=extra_plugins)
    except PluginError as error:
        console.print(f"[red]error:[/] {error}")
        return 2
    _warn_plugin_failures(registry, console)

    try:
        if args.command == "list":
            _list(args.what, registry, Console())
        elif args.command == "validate":
            from slmbench.data import resolve_data_dir, validate
            from slmbench.runner import resolve_task_path

            print(validate(resolve_task_path(args.task, registry), resolve_data_dir(args.data_dir)))
        elif args.command == "report":
            from slmbench.report import render_comparison, render_report

            if args.compare:
                print(render_comparison(args.run_dirs, args.compare))
            else:
                for run_dir in args.run_dirs:
                    print(render_report(run_dir, _constraints(args)))
        else:
            return _run(args, registry, console)
    except (TaskError, UnknownName, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error.args[0] if isinstance(error, UnknownName) else error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
