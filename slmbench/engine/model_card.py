"""The model card of an export (``README.md``, written through ``huggingface_hub``'s ``ModelCard``): what
the model does and how well, on which data under which licence, from which base models, trained how,
on what machine, what is in the folder and the few lines that use each form without slmbench."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slmbench.lm.embedded import EMBEDDED
from slmbench.lm.exported import form_bytes, usage
from slmbench.lm.models import model_license
from slmbench.records import ExportManifest, RecordError, RunRecord, TrialRecord, read_run
from slmbench.report.markdown import cell, interval, size

if TYPE_CHECKING:
    from slmbench.engine.reuse import CheckedTrial

GEMMA_TERMS = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms. "
    "These terms pass on to whoever receives this model or a model derived from it."
)
KNOWN_LIBRARIES = {
    "skops-pipeline": "scikit-learn (skops)",
    "sentence-transformers-skops": "sentence-transformers + scikit-learn (skops)",
    "transformers-sequence-classification": "transformers",
    "onnx-sequence-classification": "onnxruntime",
    "transformers-causal-lm": "transformers (+ peft), scored by slmbench's prompt",
    "slmbench": "slmbench",
}


def model_card(manifest: ExportManifest, checked: CheckedTrial, base_models: list[str], export_dir: Path) -> str:
    """The card's text: YAML front matter (licence, base models, tags) and markdown."""
    from huggingface_hub import ModelCard, ModelCardData

    record, task = checked.saved.record, checked.task
    run = _run_record(export_dir / "slmbench")
    licenses = {name: model_license(name) for name in base_models}
    model_licenses = sorted({license for license in licenses.values() if license})
    hub_ids = [EMBEDDED[name].hub_id if name in EMBEDDED else name for name in base_models if name in EMBEDDED or _hub_id(name)]
    data = ModelCardData(
        license=(model_licenses[0] if len(model_licenses) == 1 else "other") if base_models else None,
        base_model=hub_ids or None,
        library_name=_library(manifest),
        pipeline_tag="text-classification",
        tags=["slmbench", "text-classification", record.strategy],
    )
    sections = [
        f"# {task.name}: {record.name} (exported by slmbench)",
        f"Classifies {task.name} texts into {len(task.labels)} labels ({', '.join(task.label_names)}): {task.description.strip()} "
        f"It is the `{record.name}` trial (seed {record.seed}) of the slmbench run `{manifest.source_run}`: "
        f"{checked.strategy.description}.",
        _results(record),
        _contents(manifest, export_dir),
        _usage(manifest),
        _data(task, run),
        _base_model_section(base_models, licenses),
        _training(record),
        _environment(record),
        _intended_use(manifest, record, task.description),
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(section for section in sections if section) + "\n")
    return str(card)


def _run_record(run_dir: Path) -> RunRecord | None:
    try:
        return read_run(run_dir)
    except RecordError:
        return None


def _hub_id(name: str) -> bool:
    """Whether ``name`` reads as a hub id (``owner/model``), not a local folder."""
    return name.count("/") == 1 and not Path(name).exists()


def _library(manifest: ExportManifest) -> str:
    kinds = {form.kind for form in manifest.forms}
    for kind, library in (
        ("sentence-transformers-skops", "sentence-transformers"),
        ("transformers-sequence-classification", "transformers"),
        ("transformers-causal-lm", "transformers"),
        ("skops-pipeline", "sklearn"),
    ):
        if kind in kinds:
            return library
    return "slmbench"


def _results(record: TrialRecord) -> str:
    from slmbench.report.stats import accuracy, bootstrap_ci, macro_f1

    metrics, predictions = record.metrics, record.predictions
    if metrics is None or predictions is None:
        return ""
    n_labels = len(record.labels)
    intervals = {
        "accuracy": bootstrap_ci(predictions.gold, predictions.predicted, accuracy),
        "macro-F1": bootstrap_ci(predictions.gold, predictions.predicted, macro_f1(n_labels)),
    }
    values = {"accuracy": metrics.accuracy, "macro-F1": metrics.macro_f1}
    rows = [f"| {name} | {interval(values[name], intervals[name])} |" for name in values]
    per_class = " · ".join(f"{cell(label)} {scores.f1:.3f}" for label, scores in metrics.per_class.items())
    return (
        f"## Results\n\nMeasured on the run's {len(predictions.gold)} held-out test examples (95% percentile bootstrap "
        "over test examples; a small test set only tells large differences apart):\n\n"
        "| metric | value (95% CI) |\n|---|---|\n" + "\n".join(rows) + (f"\n\nF1 per label: {per_class}." if per_class else "")
    )


def _contents(manifest: ExportManifest, export_dir: Path) -> str:
    rows = []
    for form in manifest.forms:
        on_disk = size(form_bytes(export_dir, form))
        quantization = form.quantization or "as trained"
        rows.append(f"| `{form.path}` | {cell(form.description)} | {KNOWN_LIBRARIES[form.kind]} | {quantization} | {on_disk} |")
    only_slmbench = all(form.kind == "slmbench" for form in manifest.forms)
    note = (
        "\n\nOnly slmbench loads this export: no library outside it loads what this strategy learnt "
        "(bottleneck adapters in a causal LM, an ensemble of other trials, a prompt scored on label tokens)."
        if only_slmbench
        else ""
    )
    notes = "".join(f"\n\n{note}" for note in manifest.notes)
    artifacts = export_dir / manifest.forms[0].path / "artifacts" / manifest.trial
    files = ", ".join(f"`{path.name}` ({size(path.stat().st_size)})" for path in sorted(artifacts.iterdir()) if path.is_file())
    notes += f"\n\nThe trial's own artifacts, in `{artifacts.relative_to(export_dir).as_posix()}/`: {files}."
    return (
        "## What is in this folder\n\n| path | what | loads with | weights | size |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + note
        + notes
        + f"\n\n`slmbench-export.json` lists these forms for programs; `{manifest.forms[0].path}/` holds the trial's record and artifacts."
    )


def _usage(manifest: ExportManifest) -> str:
    parts = [
        "## Use it\n\nWith slmbench (any form of this folder, in batches, from CSV, JSON lines, Parquet or stdin):\n\n"
        f"```sh\nslmbench predict . texts.csv --output predictions.jsonl   # texts.csv has a column {manifest.text_column!r}\n```"
    ]
    for form in manifest.forms:
        lines = usage(form, manifest.labels)
        if lines is not None:
            where = f"the form in `{form.path}` ({KNOWN_LIBRARIES[form.kind]})"
            parts.append(f"Without slmbench, {where}, run from this folder:\n\n```python\n{lines}```")
    if any(form.kind == "transformers-causal-lm" for form in manifest.forms):
        parts.append(
            "The causal LM in `model/` answers the prompt slmbench builds for this task (its instruction, labels and "
            "answer format), each label scored by its tokens' log-likelihood: `slmbench predict` does exactly that; "
            "any other runtime must build the same prompt to get the same answers."
        )
    return "\n\n".join(parts)


def _data(task: object, run: RunRecord | None) -> str:
    license = getattr(task, "license", None) or "not stated in the task file (add `license:` to it)"
    lines = [f"## Data\n\n- task: `{getattr(task, 'name', '')}`", f"- licence of the data: {license}"]
    data = run.data if run is not None else None
    if data is not None:
        where = f"file `{data.file}`" if data.file else (f"hub dataset `{data.hub.path}`" if data.hub else "unknown")
        lines.append(f"- source: {where}" + (f", SHA-256 `{data.sha256}`" if data.sha256 else ""))
        if data.rows is not None:
            lines.append(
                f"- rows read: {data.rows:,}" + (f" (texts and labels hash `{data.content_sha256[:16]}…`)" if data.content_sha256 else "")
            )
    if run is not None and run.splits.sizes:
        lines.append("- splits: " + ", ".join(f"{name} {size:,}" for name, size in run.splits.sizes.items()))
    return "\n".join(lines)


def _base_model_section(base_models: list[str], licenses: dict[str, str | None]) -> str:
    if not base_models:
        return "## Base model\n\nNone: no pre-trained model is part of it."
    lines = ["## Base models\n"]
    for name in base_models:
        license = licenses[name] or "not known to slmbench: check the model's own card"
        lines.append(f"- `{Path(name).name if Path(name).exists() else name}`: licence {license}")
    if any(license == "gemma" for license in licenses.values()):
        lines.append(f"\n{GEMMA_TERMS}")
    return "\n".join(lines)


def _training(record: TrialRecord) -> str:
    config = record.config
    options = ", ".join(f"`{name}={value}`" for name, value in record.options.items()) or "none"
    lines = [f"## Training\n\n- strategy `{record.strategy}`, options {options}"]
    if record.tuning is not None and record.tuning.budget > 1:
        lines.append(f"- options chosen on the validation split among {len(record.tuning.tried)} settings tried")
    if config is not None:
        budget = config.profile
        caps = [f"profile `{budget.name}`", f"inputs up to {budget.max_input_tokens} tokens"]
        if budget.max_train_steps is not None:
            caps.append(f"at most {budget.max_train_steps} training steps")
        if budget.max_train_examples is not None:
            caps.append(f"at most {budget.max_train_examples:,} train examples")
        lines.append(f"- seed {config.seed}; budget: {', '.join(caps)}")
    if record.train_examples is not None:
        seen = f", {record.train_examples_seen:,} of them seen" if record.train_examples_seen is not None else ""
        lines.append(f"- {record.train_examples:,} train examples{seen}; {record.validation_examples or 0:,} validation examples")
    if record.cost.train_seconds is not None:
        lines.append(f"- training took {record.cost.train_seconds:,.1f} s")
    return "\n".join(lines)


def _environment(record: TrialRecord) -> str:
    environment = record.environment
    lines = ["## Environment\n"]
    if environment.platform or environment.python:
        lines.append(f"- Python {environment.python or '?'} on {environment.platform or '?'}")
    if environment.cpu:
        lines.append(f"- CPU: {environment.cpu}" + (f", {environment.cpu_count} cores" if environment.cpu_count else ""))
    if environment.accelerator is not None:
        lines.append(f"- accelerator: {environment.accelerator.name}")
    if record.models is not None:
        lines.append(f"- device `{record.models.device}`, dtype `{record.models.dtype}`")
    if environment.packages:
        lines.append("- packages: " + ", ".join(f"{name} {version}" for name, version in sorted(environment.packages.items())))
    return "\n".join(lines) if len(lines) > 1 else ""


def _intended_use(manifest: ExportManifest, record: TrialRecord, description: str) -> str:
    tested = len(record.predictions.gold) if record.predictions is not None else 0
    lines = [
        "## Intended use and limits\n",
        f"- For texts like the task's ({description.strip()}), labelled with its {len(manifest.labels)} labels only: "
        "any other text still gets one of them.",
        f"- The figures above come from {tested} test examples of the same source; on other sources expect less.",
        "- The probabilities are the model's scores, not checked for calibration here: do not read 0.9 as 90% without checking.",
    ]
    text = "\n".join(lines)
    if manifest.training_texts:
        text += (
            f"\n\n> **Warning: this export contains training data.** {manifest.training_texts}. "
            "Share it only where the training data may be shared."
        )
    return text
