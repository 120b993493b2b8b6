"""``slmbench validate``: check a task YAML, its data and its verbalizers without running anything."""

from __future__ import annotations

import argparse

from slmbench.cli.console import say


def validate_command(args: argparse.Namespace, registry, console) -> None:
    """Print what the task's data holds and the prompt format ``--model`` would be prompted in; warn about
    verbalizers that its tokenizer splits badly."""
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
        from slmbench.lm.models import SharedModels
        from slmbench.lm.prompt_format import PromptFormatError, describe_prompt_format
        from slmbench.lm.prompts import verbalizer_warnings

        try:
            described, tokenizer = describe_prompt_format(SharedModels(causal_lm_name=args.model).tokenizer, args.prompt_format, args.model)
        except PromptFormatError as error:
            raise RunError(str(error)) from None
        print(f"prompt format: {described}")
        if tokenizer is None:
            say(console, "yellow", "warning", f"verbalizers not checked: the tokenizer of {args.model} cannot be loaded here")
            return
        for warning in verbalizer_warnings(load_task(path), tokenizer):
            say(console, "yellow", "warning", warning)
