"""``slmbench export``: a finished trial written in the forms other tools load, with its model card
(``slmbench.engine.exporting``)."""

from __future__ import annotations

import argparse

from slmbench.cli.console import say
from slmbench.cli.exit_codes import EXIT_OK
from slmbench.cli.predict import run_folder_trial


def export_command(args: argparse.Namespace, registry, console) -> int:
    """Export the trial (default: the report's recommendation at its best seed on validation) to ``--to``."""
    from slmbench.common.files import folder_bytes
    from slmbench.engine.exporting import export_trial
    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.reuse import check_trial
    from slmbench.lm.exported import form_bytes
    from slmbench.report.markdown import size

    saved, chosen = run_folder_trial(args)
    checked = check_trial(saved, registry.strategy)
    say(console, "cyan", "export", f"{saved.record.name}, seed {saved.record.seed} ({chosen}), from {saved.run_dir} to {args.to}")
    manifest = export_trial(checked, registry.strategy, args.to, ModelCache(None), args.quantize, args.device)
    for form in manifest.forms:
        quantized = f", {form.quantization}" if form.quantization else ""
        say(console, "green", "wrote", f"{args.to / form.path} ({form.kind}{quantized}, {size(form_bytes(args.to, form))})")
    if manifest.training_texts:
        say(console, "yellow", "note", f"the export contains training data: {manifest.training_texts}")
    say(
        console,
        "green",
        "done",
        f"{args.to}: {size(folder_bytes(args.to))}, model card README.md; slmbench predict {args.to} INPUT applies it",
    )
    return EXIT_OK
