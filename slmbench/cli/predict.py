"""``slmbench predict``: apply a finished trial to new texts.

The trial is the report's recommendation unless ``--strategy`` names one, at the seed with the best
validation accuracy unless ``--seed`` names one; its strategy is rebuilt from the run folder
(``slmbench.engine.reuse``). The input is checked before any model loads, then read, predicted and
written a batch at a time, so that its size does not matter.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from slmbench.cli.console import say
from slmbench.cli.exit_codes import EXIT_OK
from slmbench.cli.parser import constraints

if TYPE_CHECKING:
    from slmbench.engine.reuse import SavedTrial


def predict_command(args: argparse.Namespace, registry, console) -> int:
    """Write one prediction per input text to stdout or ``--output``."""
    import numpy as np

    from slmbench.cli.prediction_output import PredictionWriter
    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.predictions import check_predictions
    from slmbench.engine.reuse import ReuseError, check_trial, load_trial, validation_accuracy
    from slmbench.tasks.text_input import input_rows, text_batches

    saved, chosen = _trial(args)
    checked = check_trial(saved, registry.strategy)
    batches = text_batches(args.input, args.text_column or checked.task.text_column, args.batch_size)  # checks the input first
    say(
        console,
        "cyan",
        "predict",
        f"{saved.record.name}, seed {saved.record.seed} ({chosen}; validation accuracy {validation_accuracy(saved.record):.3f}), "
        f"from {args.run_dir}",
    )
    cache = ModelCache(None)  # no progress bars inside: one bar of texts, below
    strategy = load_trial(checked, registry.strategy, cache, args.device)
    recorded = checked.models.device
    if strategy.context.device != recorded:
        say(
            console,
            "yellow",
            "note",
            f"predicting on {strategy.context.device}, not {recorded} where the trial ran: probabilities may differ slightly",
        )
    labels = checked.task.label_names
    show_progress = not args.no_progress and sys.stderr.isatty()
    done = 0
    with PredictionWriter(labels, args.output, args.format) as writer, _progress(show_progress, input_rows(args.input)) as advance:
        for batch in batches:
            try:
                predictions = strategy.predict(batch)
                check_predictions(predictions, len(batch), len(labels))
            except Exception as error:  # noqa: BLE001 - a plugin's predict: one line naming the texts (an --output file is not written)
                raise ReuseError(
                    f"{saved.record.name} failed on input texts {done + 1}-{done + len(batch)}: {type(error).__name__}: {error}"
                ) from None
            cache.forget_vectors()  # keeps no embedding of a text already predicted
            probabilities = None if predictions.probabilities is None else np.asarray(predictions.probabilities, dtype=float).tolist()
            writer.write([int(label) for label in predictions.labels], probabilities)
            done += len(batch)
            advance(len(batch))
    if args.output is not None:
        say(console, "green", "wrote", f"{done} predictions to {args.output}")
    return EXIT_OK


def run_folder_trial(args: argparse.Namespace) -> tuple[SavedTrial, str]:
    """The trial of a run folder that ``--strategy``, ``--seed`` and the ``--max-*`` constraints name,
    and why it was chosen (``predict`` and ``export``)."""
    from slmbench.engine.reuse import find_trial

    saved = find_trial(args.run_dir, args.strategy, args.seed, constraints(args))
    return saved, "the report's recommendation" if args.strategy is None else "as asked"


def _trial(args: argparse.Namespace) -> tuple[SavedTrial, str]:
    """The trial to apply and why it was chosen: an export's own, or one of a run folder's."""
    from slmbench.engine.exporting import ExportError, is_export, open_export

    if not is_export(args.run_dir):
        return run_folder_trial(args)
    manifest, saved = open_export(args.run_dir)
    if args.strategy not in (None, manifest.name, manifest.strategy) or args.seed not in (None, manifest.seed):
        raise ExportError(f"{args.run_dir}: the export holds {manifest.name} seed {manifest.seed} only; drop --strategy and --seed")
    return saved, "the export's trial"


@contextmanager
def _progress(enabled: bool, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar of texts predicted on stderr (a terminal), or nothing."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("predicting", total=total)
        yield lambda n: progress.advance(task, n)
