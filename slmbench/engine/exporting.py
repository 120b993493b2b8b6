"""``slmbench export``: a finished trial as a self-contained folder, in the forms its ecosystem loads.

An export folder holds:

- ``slmbench/``: the trial as slmbench reloads it (its record, its artifacts, those of the members it
  combines, the run's ``run.json``): ``slmbench predict EXPORT_DIR`` reads it through the manifest;
- the strategy's other forms (``Strategy.export``): a scikit-learn pipeline, a sentence-transformers
  model and head, a transformers folder, an ONNX copy...;
- ``slmbench-export.json``: the manifest (``ExportManifest``), naming every form and what loads it;
- ``README.md``: the model card (``slmbench.engine.model_card``).

Nothing is written outside the folder asked for, which must be new or empty; a failed export removes
what it wrote.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from slmbench.common.files import is_inside
from slmbench.common.text import first_line
from slmbench.engine.reuse import CheckedTrial, SavedTrial, check_trial, combined_members, load_trial
from slmbench.lm.deployment import UnsupportedQuantization
from slmbench.lm.exported import UnsafeSerialization
from slmbench.records import (
    EXPORT_MANIFEST,
    ExportForm,
    ExportManifest,
    RecordError,
    read_export_manifest,
    read_trial,
    trial_file,
    write_json,
    write_text,
)
from slmbench.strategy.base import CombiningStrategy, QuantizationNotExported, Strategy

if TYPE_CHECKING:
    from slmbench.engine.model_cache import ModelCache

SLMBENCH_FORM = "slmbench"
"""The export's subfolder holding the trial as slmbench reloads it (a run folder of its trials)."""


class ExportError(ValueError):
    """An export that cannot be made or read (one line: exit 2)."""


def export_trial(
    checked: CheckedTrial,
    strategies: Callable[[str], type[Strategy]],
    to: Path,
    cache: ModelCache,
    quantize: str | None = None,
    device: str | None = None,
) -> ExportManifest:
    """Export ``checked`` to the new or empty folder ``to``; its manifest. The trial is reloaded from
    the export's own copy of its artifacts, so what ships is what loads."""
    from importlib.metadata import version

    from slmbench.engine.model_card import model_card

    if quantize is not None and checked.strategy.export is Strategy.export:
        raise ExportError(f"--quantize {quantize}: {checked.strategy.name} has no weights of its own to quantize")
    if is_inside(to, checked.saved.run_dir):
        raise ExportError(f"--to {to}: inside the run folder {checked.saved.run_dir}; name a folder outside it")
    created = _claim(to)
    try:
        saved = _copy_trial(checked.saved, to / SLMBENCH_FORM)
        strategy = load_trial(check_trial(saved, strategies), strategies, cache, device)
        forms = [_slmbench_form(strategy)]
        try:
            forms += strategy.export(to, quantize)
        except (QuantizationNotExported, UnsupportedQuantization, UnsafeSerialization) as error:
            raise ExportError(f"--quantize {quantize}: {error}") from None
        record = saved.record
        manifest = ExportManifest(
            trial=saved.key,
            strategy=record.strategy,
            name=record.name,
            seed=record.seed,
            task=checked.task.name,
            labels=list(checked.task.label_names),
            text_column=checked.task.text_column,
            source_run=checked.saved.run_dir.resolve().name,
            exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            slmbench_version=version("slmbench"),
            quantize=quantize,
            forms=forms,
            training_texts=_training_texts(strategy),
            notes=[
                f"`slmbench predict` on this folder loads the base model `{name}` from where the run found it, a folder "
                "on that machine: copy it along, or use the forms above that carry their weights."
                for name in strategy.base_models()
                if Path(name).is_absolute()
            ],
        )
        write_json(to / EXPORT_MANIFEST, manifest.model_dump(mode="json"))
        write_text(to / "README.md", model_card(manifest, checked, strategy.base_models(), to))
        return manifest
    except BaseException:
        _remove(to, created)
        raise


def open_export(directory: Path) -> tuple[ExportManifest, SavedTrial]:
    """An export folder's manifest and the trial it holds, for ``slmbench predict EXPORT_DIR``."""
    try:
        manifest = read_export_manifest(directory)
        run_dir = Path(directory) / SLMBENCH_FORM
        if not is_inside(trial_file(run_dir, manifest.trial), run_dir / "trials"):
            raise ExportError(f"{directory}: its manifest names a trial outside the export ({manifest.trial!r})")
        record = read_trial(trial_file(run_dir, manifest.trial))
    except RecordError as error:
        raise ExportError(f"{directory}: not a readable slmbench export: {first_line(error)}") from None
    models = record.models or (record.config.models if record.config else None)
    if models is not None and models.trust_remote_code:
        raise ExportError(
            f"{directory}: the export asks to run its model's own code (trust_remote_code); slmbench does not run code "
            "that comes with an export: load its model yourself, or predict from the run folder it came from"
        )
    return manifest, SavedTrial(run_dir, manifest.trial, record)


def is_export(directory: Path) -> bool:
    return (Path(directory) / EXPORT_MANIFEST).is_file()


def _claim(to: Path) -> bool:
    """Make sure ``to`` is a new or empty folder; True if this call created it."""
    if "\x00" in str(to):
        raise ExportError(f"--to {str(to)!r}: a path cannot hold a NUL character")
    if to.is_symlink():
        raise ExportError(f"--to {to}: a symbolic link; name the folder itself")
    if to.exists() and not to.is_dir():
        raise ExportError(f"--to {to}: exists and is not a folder; name a new or empty folder")
    if to.is_dir():
        if any(to.iterdir()):
            raise ExportError(f"--to {to}: the folder is not empty; name a new or empty folder (nothing was overwritten)")
        return False
    if not to.parent.is_dir():
        raise ExportError(f"--to {to}: its parent folder {to.parent} does not exist")
    try:
        to.mkdir()
    except OSError as error:
        raise ExportError(f"--to {to}: cannot create the folder: {error.strerror or error}") from None
    return True


def _remove(to: Path, created: bool) -> None:
    """Undo a failed export: the folder if it was created, else what was written into it."""
    if created:
        shutil.rmtree(to, ignore_errors=True)
        return
    for path in to.iterdir() if to.is_dir() else ():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _copy_trial(saved: SavedTrial, run_dir: Path) -> SavedTrial:
    """The trial's record and artifacts (and its members', recursively) copied into the run folder
    ``run_dir`` of the export, with the run's ``run.json``; the copy as a SavedTrial."""
    if not (run_dir / "run.json").exists() and (saved.run_dir / "run.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(saved.run_dir / "run.json", run_dir / "run.json")
    target = trial_file(run_dir, saved.key)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(trial_file(saved.run_dir, saved.key), target)
    shutil.copytree(saved.artifact_dir, run_dir / "artifacts" / saved.key, dirs_exist_ok=True)
    copy = SavedTrial(run_dir, saved.key, saved.record)
    if saved.record.config is not None and saved.record.config.inputs:
        for member in combined_members(saved):
            _copy_trial(member, run_dir)
    return copy


def _slmbench_form(strategy: Strategy) -> ExportForm:
    description = f"the trial as slmbench reloads it ({strategy.name}: {strategy.description})"
    if isinstance(strategy, CombiningStrategy):
        description += f", with the {len(strategy.members)} member trials it combines"
    return ExportForm(kind="slmbench", path=SLMBENCH_FORM, description=description)


def _training_texts(strategy: Strategy) -> str | None:
    """What train text the export holds: the strategy's, and its members'."""
    kept = [f"{strategy.name}: {strategy.training_texts_kept}"] if strategy.training_texts_kept else []
    for member in strategy.members if isinstance(strategy, CombiningStrategy) else []:
        inner = getattr(member, "strategy", None)
        if inner is not None and (text := _training_texts(inner)):
            kept.append(text)
    return "; ".join(kept) or None
