"""The ``slmbench`` argument parser: one small function per sub-command, plus the argument types and the
``--max-*`` constraint flags shared by ``run`` and ``report``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from slmbench.lm.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.lm.prompt_format import PROMPT_FORMATS
from slmbench.tasks.profiles import PROFILES

_OUTSIDE_HELP = (
    "let the task read a data file outside --data-dir and the task file's folder "
    "(an absolute or '..' source.file, a local folder as source.hub.path)"
)


def _int_list(what: str, allow_all: bool = False) -> Callable[[str], list[int]]:
    """An argument type for a comma-separated list of integers (``all`` too where ``allow_all``)."""

    def parse(value: str) -> list[int]:
        from slmbench.engine.run_options import RunError, parse_int_list

        try:
            return parse_int_list(value, what, allow_all)
        except RunError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _positive(kind: type) -> Callable[[str], int | float]:
    """An argument type for a positive, finite number of ``kind`` (int or float)."""

    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a {kind.__name__}") from None
        if not number > 0 or number != number or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{value!r} must be a positive, finite number")
        return number

    return parse


def _common_parser() -> argparse.ArgumentParser:
    """The flags every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--strict-plugins",
        action="store_true",
        default=argparse.SUPPRESS,
        help="fail when any plugin fails to load (default: warn and go on)",
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    return common


def _constraints_parser() -> argparse.ArgumentParser:
    """The ``--max-*`` flags: constraints on the recommended strategy (read back by ``constraints``)."""
    constraints = argparse.ArgumentParser(add_help=False)
    group = constraints.add_argument_group("constraints on the recommended strategy")
    group.add_argument("--max-train-minutes", type=_positive(float), metavar="MIN")
    group.add_argument(
        "--max-latency-ms",
        type=_positive(float),
        metavar="MS",
        help="p95 latency of a single request (batched latency per example where not measured)",
    )
    group.add_argument("--max-memory-mb", type=_positive(float), metavar="MB", help="peak memory")
    group.add_argument("--max-labelled-examples", type=_positive(int), metavar="N")
    return constraints


def constraints(args: argparse.Namespace):
    """The ``Constraints`` that the ``--max-*`` flags given ask for."""
    from slmbench.report.recommend import Constraints

    return Constraints(
        max_train_minutes=args.max_train_minutes,
        max_latency_ms=args.max_latency_ms,
        max_memory_mb=args.max_memory_mb,
        max_labelled_examples=args.max_labelled_examples,
    )


def _price(value: str) -> tuple[str, float]:
    """An argument type for ``DEVICE=PRICE``: an hour of ``DEVICE`` (cpu, cuda, mps...) costs ``PRICE``."""
    device, equals, price = value.partition("=")
    if not equals or not device.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: expected DEVICE=PRICE, e.g. cpu=0.10 or cuda=2.50")
    if ":" in device:
        raise argparse.ArgumentTypeError(f"{value!r}: devices are priced by kind (cuda, not cuda:0), e.g. cuda=2.50")
    try:
        amount = float(price)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: the price {price!r} is not a number") from None
    if not 0 <= amount < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: the price must be a finite number, 0 or more")
    return device.strip().lower(), amount


def _accuracy(value: str) -> float:
    """An argument type for an accuracy strictly between 0 and 1."""
    try:
        accuracy = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < accuracy < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: an accuracy between 0 and 1 (exclusive), e.g. 0.85")
    return accuracy


def _report_options_parser() -> argparse.ArgumentParser:
    """The flags that shape the report's analyses (read back by ``report_options``)."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("report")
    group.add_argument(
        "--target-accuracy",
        type=_accuracy,
        metavar="ACCURACY",
        help="labels needed: train examples each learning curve needs to reach this test accuracy (default: the best measured)",
    )
    group.add_argument(
        "--price-per-hour",
        type=_price,
        action="append",
        default=[],
        metavar="DEVICE=PRICE",
        help="cost per prediction in money: what an hour of a device costs, once per device, e.g. "
        "--price-per-hour cpu=0.10 --price-per-hour cuda=2.50",
    )
    return options


def report_options(args: argparse.Namespace):
    """The ``ReportOptions`` that ``--target-accuracy`` and ``--price-per-hour`` ask for (a device priced twice: the last)."""
    from slmbench.report.options import ReportOptions

    prices = dict(args.price_per_hour)
    return ReportOptions(target_accuracy=args.target_accuracy, price_per_hour=tuple(sorted(prices.items())))


def _add_run(run: argparse.ArgumentParser) -> None:
    """``run``: what to run, on which models and hardware, and how."""
    run.add_argument("--task", help="a registered task name or a task YAML path (required unless --resume)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run folder: rerun only failed or missing trials")
    run.add_argument("--strategies", help="'all' or a comma-separated list (default: all)")
    run.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="set a strategy option, e.g. --set lora.r=8 (repeatable; `slmbench show STRATEGY` lists them)",
    )
    run.add_argument("--profile", choices=list(PROFILES), help="budget (default: quick)")
    run.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    run.add_argument("--allow-outside-data-dir", action="store_true", help=_OUTSIDE_HELP)
    run.add_argument("--output", help="output folder (default: runs)")
    run.add_argument("--seeds", type=_int_list("--seeds"), metavar="N,N,...", help="run every trial once per seed, e.g. 0,1,2 (default: 0)")
    run.add_argument("--seed", dest="seeds", type=_int_list("--seed"), help=argparse.SUPPRESS)
    run.add_argument("--run-id", help="name of the run folder (default: the profile, so rerunning a command resumes it)")
    run.add_argument("--model", help=f"causal LM: embedded name, hub id or folder (default: {EMBEDDED_CAUSAL_LM})")
    run.add_argument("--embedding-model", help=f"sentence-transformers model (default: {EMBEDDED_EMBEDDING_MODEL})")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    run.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    run.add_argument(
        "--prompt-format",
        choices=PROMPT_FORMATS,
        help="how the causal LM is prompted: its chat template (chat), plain Text:/Answer: lines for a base model "
        "(completion), or chat when the tokenizer has a chat template (auto, the default)",
    )
    run.add_argument("--trust-remote-code", action="store_true", default=None, help="allow model code from the hub to run")
    run.add_argument("--trial-timeout", type=_positive(float), metavar="SECONDS", help="stop a trial that runs longer (status timeout)")
    run.add_argument(
        "--train-sizes",
        metavar="N,N,...",
        type=_int_list("--train-sizes", allow_all=True),
        help="learning curve: also run each strategy on nested subsets of this many train examples, e.g. 16,64,256,all",
    )
    run.add_argument(
        "--tuning-trials",
        type=_positive(int),
        metavar="N",
        help="option settings every strategy may try, chosen on validation (default: the profile's; 1: defaults only)",
    )
    run.add_argument(
        "--track",
        action="append",
        default=[],
        metavar="TRACKER",
        help="send trials and the report to an experiment tracker, e.g. mlflow (`slmbench list trackers`)",
    )
    run.add_argument(
        "--config",
        type=Path,
        metavar="SWEEP_YAML",
        help="a sweep file: tasks, strategies, option grids, seeds, models... (arguments given here override it)",
    )
    run.add_argument(
        "--keep-artifacts",
        choices=["all", "none"],
        help="all: keep what every trial learnt, for slmbench predict (default); none: delete it once the trial is scored "
        "(or, for a model the deployment check may quantize, once the checks after the trials are done)",
    )
    run.add_argument(
        "--export-check",
        choices=["recommended", "all", "none"],
        help="after the trials, export the recommended trial (default), every trial or none, reload each exported form "
        "from the export alone and score it on the test split (the report's deployment section)",
    )
    run.add_argument(
        "--deployment-check",
        choices=["contenders", "all", "none"],
        help="after the trials, score quantized copies (int8, nf4) of the contenders' models (default: the recommended "
        "strategy, those not significantly worse and those on a Pareto front of accuracy against training time, latency "
        "or memory), of every weight-updating strategy's, or of none",
    )
    run.add_argument("--dry-run", action="store_true", help="list the trials the command would run and which are done; run nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    _add_execution(run)


def _add_execution(run: argparse.ArgumentParser) -> None:
    """``run``'s execution group: the executor and its Ray settings."""
    execution = run.add_argument_group("execution")
    execution.add_argument("--executor", choices=["local", "ray"], help="local: one trial after another (default); ray: parallel Ray tasks")
    execution.add_argument(
        "--workers", type=_positive(int), metavar="N", help="ray: trials in parallel (default: CPUs / threads per trial)"
    )
    execution.add_argument("--ray-address", metavar="auto|HOST:PORT", help="ray: join this cluster (default: start a local instance)")
    execution.add_argument(
        "--gpus-per-trial", type=_positive(float), metavar="G", help="ray on CUDA: GPUs per trial, fractions allowed (default 1)"
    )
    execution.add_argument(
        "--threads-per-trial", type=_positive(int), metavar="T", help="ray: CPU threads per trial (default: CPUs / workers)"
    )


def _add_list(listing: argparse.ArgumentParser) -> None:
    """``list``: what to list and in which format."""
    listing.add_argument("what", choices=["strategies", "tasks", "plugins", "trackers", "models"])
    listing.add_argument("--options", action="store_true", help="with strategies: every option of each")
    listing.add_argument(
        "--format",
        choices=["table", "text", "json"],
        help="default: a table on a terminal, plain text (one line each, nothing cut) otherwise",
    )


def _add_show(show: argparse.ArgumentParser) -> None:
    """``show``: the strategy to describe."""
    show.add_argument("strategy")
    show.add_argument("--format", choices=["text", "json"], default="text")


def _add_validate(validate: argparse.ArgumentParser) -> None:
    """``validate``: the task to check, its data and the model whose tokenizer to check against."""
    validate.add_argument("task", help="a task YAML path or a registered task name")
    validate.add_argument("--data-dir", help="folder of task data files (default: $SLMBENCH_DATA_DIR)")
    validate.add_argument("--allow-outside-data-dir", action="store_true", help=_OUTSIDE_HELP)
    validate.add_argument(
        "--model", default=EMBEDDED_CAUSAL_LM, help="check the verbalizers against this causal LM's tokenizer ('' to skip)"
    )
    validate.add_argument(
        "--prompt-format", choices=PROMPT_FORMATS, default="auto", help="say what the model is prompted in with this --prompt-format"
    )


def _add_report(report: argparse.ArgumentParser) -> None:
    """``report``: the run folders and what to make of them."""
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument(
        "--format",
        choices=["md", "json", "csv"],
        default="md",
        help="md: write report.md (default); json: the typed records; csv: one row per trial",
    )
    report.add_argument("--compare", action="store_true", help="one comparison of several runs (tasks): strategy x task, mean rank")
    report.add_argument("--output", type=Path, metavar="FILE", help="write json, csv or the comparison here instead of stdout")


def _add_predict(predict: argparse.ArgumentParser) -> None:
    """``predict``: which trial, the input, the output."""
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, or an export folder (slmbench export)")
    predict.add_argument("input", metavar="INPUT", help="a .csv, .jsonl or .parquet file of texts, or - for one text per line on stdin")
    predict.add_argument("--strategy", help="the trial's strategy or variant (default: the report's recommendation)")
    predict.add_argument("--seed", type=int, help="the trial's seed (default: the seed with the best validation accuracy)")
    predict.add_argument("--text-column", metavar="NAME", help="the input's column of texts (default: the task's text column)")
    predict.add_argument(
        "--format", choices=["jsonl", "csv"], default="jsonl", help="jsonl: one JSON object per text (default); csv: a table"
    )
    predict.add_argument("--output", type=Path, metavar="FILE", help="write the predictions here instead of stdout")
    predict.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: where the trial ran)")
    predict.add_argument(
        "--batch-size", type=_positive(int), default=1024, metavar="N", help="texts read and predicted at a time (default: 1024)"
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")


def _add_export(export: argparse.ArgumentParser) -> None:
    """``export``: which trial, where to, quantized or not."""
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    export.add_argument("--strategy", help="the trial's strategy or variant (default: the report's recommendation)")
    export.add_argument("--seed", type=int, help="the trial's seed (default: the seed with the best validation accuracy)")
    export.add_argument("--to", type=Path, required=True, metavar="DIR", help="a new or empty folder to write the export to")
    export.add_argument(
        "--quantize",
        choices=["int8", "nf4"],
        help="the model's weights quantized (as the deployment check measures them), where that can be saved without pickle",
    )
    export.add_argument("--device", help="auto, cpu, cuda... where the trial is loaded to be exported (default: where it ran)")


def build_parser() -> argparse.ArgumentParser:
    """The ``slmbench`` parser with its sub-commands, in the order ``--help`` lists them."""
    common, limits, analyses = _common_parser(), _constraints_parser(), _report_options_parser()
    parser = argparse.ArgumentParser(
        prog="slmbench",
        description="Decide how to adapt a small language model to a task, with measurements.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help, add_arguments, parents in (
        ("run", "run strategies on a task and write trials and a report", _add_run, [limits, analyses]),
        ("list", "list registered strategies, tasks, plugins or trackers, or the embedded models", _add_list, []),
        ("show", "describe a strategy and every option it accepts", _add_show, []),
        ("validate", "check a task YAML and its data without running anything", _add_validate, []),
        ("report", "render a run folder's report, or export its records", _add_report, [limits, analyses]),
        ("predict", "apply a finished trial to new texts", _add_predict, [limits]),
        ("export", "write a finished trial in the forms other tools load, with a model card", _add_export, [limits]),
    ):
        add_arguments(commands.add_parser(name, help=help, parents=[common, *parents]))
    return parser
