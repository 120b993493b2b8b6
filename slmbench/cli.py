"""The ``slmbench`` command line. Heavy libraries load only inside the command that needs them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmbench.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.profiles import PROFILES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slmbench",
        description="Decide how to adapt a small language model to a task, with measurements.",
    )
    parser.add_argument(
        "--strict-plugins", action="store_true", help="fail when any plugin fails to load (default: warn)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run strategies on a task and write trials and a report")
    run.add_argument("--task", required=True, help="a registered task name or a task YAML path")
    run.add_argument("--strategies", default="all", help="'all' or a comma-separated list (default: all)")
    run.add_argument("--profile", default="quick", choices=list(PROFILES), help="budget (default: quick)")
    run.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    run.add_argument("--output", default="runs", help="output folder (default: runs)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--run-id", help="name of the run folder (default: a UTC timestamp)")
    run.add_argument("--model", default=EMBEDDED_CAUSAL_LM, help="causal LM: embedded name, hub id or folder")
    run.add_argument(
        "--embedding-model", default=EMBEDDED_EMBEDDING_MODEL, help="sentence-transformers model: embedded name, hub id or folder"
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    run.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub to run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")

    listing = commands.add_parser("list", help="list registered strategies, tasks or plugins")
    listing.add_argument("what", choices=["strategies", "tasks", "plugins"])

    validate = commands.add_parser("validate", help="check a task YAML and its data without running anything")
    validate.add_argument("task", help="a task YAML path or a registered task name")
    validate.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")

    report = commands.add_parser("report", help="render report.md from a run folder's trial JSONs")
    report.add_argument("run_dir", type=Path)
    return parser


def _warn_plugin_failures(registry, console) -> None:
    for failure in registry.failures:
        console.print(f"[yellow]warning:[/] plugin [bold]{failure.plugin}[/] was not loaded: {failure.error}")


def _list(what: str, registry, console) -> None:
    from rich.table import Table

    if what == "strategies":
        table = Table("strategy", "family", "description", "plugin")
        for name, item in sorted(registry.strategies.items()):
            table.add_row(name, item.value.family.value, item.value.description, f"{item.plugin} ({item.distribution})")
    elif what == "tasks":
        table = Table("task", "file", "plugin")
        for name, item in sorted(registry.tasks.items()):
            table.add_row(name, str(item.value), f"{item.plugin} ({item.distribution})")
    else:
        table = Table("plugin", "distribution", "status")
        for name, distribution in sorted(registry.plugins.items()):
            table.add_row(name, distribution, "loaded")
        for failure in registry.failures:
            table.add_row(failure.plugin, "", f"[red]failed:[/] {failure.error}")
    console.print(table)


def _print_trial(record: dict, console) -> None:
    if record["status"] == "ok":
        metrics, cost = record["metrics"], record["cost"]
        console.print(
            f"[green]ok[/]     {record['strategy']}: accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f}, train {cost['train_seconds']:.1f} s, "
            f"predict {cost['predict_seconds']:.1f} s"
        )
    else:
        error = record["error"]
        console.print(f"[red]failed[/] {record['strategy']}: {error['type']}: {error['message'].splitlines()[0] if error['message'] else ''}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console

    from slmbench.plugins import PluginError, UnknownName, load_registry
    from slmbench.tasks import TaskError

    console = Console(stderr=True)
    try:
        registry = load_registry(strict=args.strict_plugins)
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
            from slmbench.report import render_report

            print(render_report(args.run_dir))
        else:
            from slmbench.progress import ProgressReporter
            from slmbench.runner import RunOptions, run_benchmark

            options = {k: v for k, v in vars(args).items() if k in RunOptions.__dataclass_fields__}
            run_dir = run_benchmark(
                RunOptions(**options),
                registry,
                ProgressReporter(enabled=not args.no_progress),
                on_trial=lambda record: _print_trial(record, console),
            )
            print(run_dir / "report.md")
    except (TaskError, UnknownName) as error:
        console.print(f"[red]error:[/] {error.args[0]}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
