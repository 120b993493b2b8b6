"""``slmbench validate``: check a task YAML, its data and its verbalizers without running anything."""

from __future__ import annotations

import argparse

from slmbench.cli.console import say


def validate_command(args: argparse.Namespace, registry, console) -> None:
    """Print what the task's data holds; warn about verbalizers that ``--model``'s tokenizer splits badly."""
    import os

    from slmbench.engine.run_options import RunError, resolve_task_path
    from slmbench.tasks.sources import resolve_data_dir
    from slmbench.tasks.spec import load_task
    from slmbench.tasks.splits import validate

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
            say(console, "yellow", "warning", warning)
