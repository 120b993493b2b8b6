"""The ``slmbench`` command line: parse the arguments, load the registry, run the command, and turn
every error into one line and an exit code. Heavy libraries load only inside the command that needs them.

Exit codes: see ``slmbench.cli.exit_codes``. Errors are one line naming the file or argument at fault;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys

from slmbench.cli.catalog import list_command, show_command
from slmbench.cli.console import error_console, say
from slmbench.cli.exit_codes import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK
from slmbench.cli.export import export_command
from slmbench.cli.parser import build_parser
from slmbench.cli.predict import predict_command
from slmbench.cli.report import report_command
from slmbench.cli.run import run_command
from slmbench.cli.validate import validate_command


def _known_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input: printed as one line, exit code 2."""
    from pydantic import ValidationError

    from slmbench.common.options import OptionError
    from slmbench.engine.exporting import ExportError
    from slmbench.engine.reuse import ReuseError
    from slmbench.engine.run_options import RunError
    from slmbench.lm.models import ModelError
    from slmbench.records import RecordError
    from slmbench.strategy.base import NotReusable
    from slmbench.strategy.registry import PluginError, UnknownName
    from slmbench.tasks.spec import TaskError
    from slmbench.tasks.text_input import PredictInputError

    return (
        PluginError,
        ValidationError,
        TaskError,
        UnknownName,
        RecordError,
        RunError,
        OptionError,
        ModelError,
        ReuseError,
        NotReusable,
        PredictInputError,
        ExportError,
    )


def _dispatch(args: argparse.Namespace, registry, console) -> int:
    """Run the command ``args`` names; its exit code."""
    if args.command == "run":
        return run_command(args, registry, console)
    if args.command == "predict":
        return predict_command(args, registry, console)
    if args.command == "export":
        return export_command(args, registry, console)
    if args.command == "list":
        list_command(args, registry)
    elif args.command == "show":
        show_command(args, registry)
    elif args.command == "validate":
        validate_command(args, registry, console)
    else:
        report_command(args)
    return EXIT_OK


def _fail(console, debug: bool, prefix: str, message: str) -> int:
    """Inside an ``except``: the traceback where ``--debug``, then ``prefix: message``; exit code 2."""
    if debug:
        console.print_exception()
    say(console, "red", prefix, message)
    return EXIT_INPUT


def main(argv: list[str] | None = None, extra_plugins: dict[str, object] | None = None) -> int:
    """Run the CLI; ``extra_plugins`` (name -> plugin object) are registered beside installed ones."""
    args = build_parser().parse_args(argv)
    console = error_console()
    debug = getattr(args, "debug", False)
    try:
        from slmbench.strategy.registry import load_registry

        registry = load_registry(strict=getattr(args, "strict_plugins", False), extra_plugins=extra_plugins)
        for failure in registry.failures:
            say(console, "yellow", "warning", f"plugin {failure.plugin} was not loaded: {failure.error}")
        return _dispatch(args, registry, console)
    except KeyboardInterrupt:
        say(console, "yellow", "interrupted", "stopped by the user")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `slmbench list | head`
        return EXIT_OK
    except _known_errors() as error:
        message = error.args[0] if error.args else str(error)
        return _fail(console, debug, "error", str(message))
    except OSError as error:  # a file that cannot be written: disk full, no permission
        return _fail(console, debug, "error", f"{error.filename}: {error.strerror or error}" if error.filename else str(error))
    except Exception as error:  # noqa: BLE001 - a bug must still end with one clear line
        return _fail(console, debug, "internal error", f"{type(error).__name__}: {error} (rerun with --debug for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
