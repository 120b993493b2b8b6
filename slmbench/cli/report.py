"""``slmbench report``: render a run folder's report, compare runs, or export their records."""

from __future__ import annotations

import argparse
import sys

from slmbench.cli.parser import constraints, report_options


def _check_report_output(args: argparse.Namespace) -> None:
    """``--output`` names a file to write, for what goes to stdout otherwise."""
    import os

    from slmbench.common.files import folder_problem
    from slmbench.engine.run_options import RunError

    if args.output is None:
        return
    if args.format == "md" and not args.compare:
        raise RunError("--output: a markdown report is written into its run folder; --output is for --format json or csv, or --compare")
    problem = "is a folder" if os.path.isdir(args.output) else folder_problem(args.output.parent)
    if problem:
        raise RunError(f"--output {args.output}: {problem}")


def report_command(args: argparse.Namespace) -> None:
    """Print each run's markdown report, or write the comparison or the json/csv export to stdout or ``--output``."""
    from slmbench.records import write_text
    from slmbench.report import exports
    from slmbench.report.render import render_report

    _check_report_output(args)
    if args.compare:
        from slmbench.report.compare import render_comparison

        output = render_comparison(args.run_dirs)
    elif args.format == "md":
        for run_dir in args.run_dirs:
            print(render_report(run_dir, constraints(args), report_options(args)))
        return
    else:
        output = exports.export(args.run_dirs, args.format)
    if args.output:
        write_text(args.output, output)
        print(args.output)
    else:
        sys.stdout.write(output)
