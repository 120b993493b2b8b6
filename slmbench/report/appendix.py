"""The report's later sections: the deployment check, then the reference sections (data and protocol:
splits, budget, options, tuning, calibration; published reference points; environment)."""

from __future__ import annotations

from typing import Any

from slmbench.common.files import folder_bytes
from slmbench.common.text import plural
from slmbench.records import TASK_COPY, Environment, Hardware, OptionValue, RunRecord, TrialRecord, seconds_between
from slmbench.report import markdown as md
from slmbench.report.markdown import MISSING, code, count, metric, number, table, text
from slmbench.report.recommend import Constraints, recommend
from slmbench.report.summary import Summary

SPLITS = ("train", "validation", "test")


def _split_tables(summary: Summary, run: RunRecord) -> list[str]:
    """Examples per split (used, available, duplicates removed), then per class and split (``run``: the summary's)."""
    splits = run.splits
    tables = []
    names = [name for name in SPLITS if name in splits.sizes]
    if names:
        rows = [
            [name, splits.sizes[name], splits.full_sizes.get(name, MISSING), splits.duplicates_removed.get(name, MISSING)] for name in names
        ]
        tables.append(table(["split", "examples used", "available before caps", "duplicates removed"], rows))
    if splits.per_class:
        columns = [name for name in SPLITS if name in splits.per_class]
        rows = [[text(label), *(splits.per_class[split].get(label, 0) for split in columns)] for label in summary.labels]
        tables.append(table(["class", *columns], rows))
    return tables


def _options_table(summary: Summary) -> str:
    """Per variant: the options it ran with and the labelled examples it needed and saw."""
    if not summary.entries:
        return ""
    rows = [
        [
            text(entry.name),
            text(", ".join(f"{k}={v}" for k, v in entry.first.options.items()) or MISSING),
            entry.labelled_examples if entry.labelled_examples is not None else MISSING,
            number(entry.mean_of("train_examples_seen")),
            count(entry.mean_of("train_compute")),
        ]
        for entry in summary.entries
    ]
    return (
        "Options each strategy ran with (set with `--set STRATEGY.OPTION=VALUE`; `slmbench show STRATEGY` lists them), "
        "the labelled examples it needs (train and validation, or fewer), the distinct train examples it learnt from "
        "and, for a weight-updating strategy, its training compute: tokens run through its model times that model's "
        "parameters (a profile's step and token caps scale with the model's size, so that it is the same whatever the model):\n\n"
        + table(["strategy", "options", "labelled examples", "train examples seen", "training compute (token x parameters)"], rows)
    )


def _data_protocol(summary: Summary) -> str:
    run = summary.run
    parts = [
        "## Data and protocol",
        "Every strategy learns from the same train split (validation is for model selection only) "
        "and is scored once on the same test split, under the same budget.",
    ]
    if run is None:
        return "\n\n".join(part for part in [*parts, _options_table(summary), _tuning(summary), _calibration(summary)] if part)
    if run.data is not None:
        data, seeds = run.data, ", ".join(map(str, run.seeds))
        parts.append(
            f"Data file {code(data.file or MISSING)}: {text(MISSING if data.rows is None else data.rows)} rows, "
            f"SHA-256 {code(data.sha256 or MISSING)}. Seed{'s' if len(run.seeds) > 1 else ''}: {seeds}."
        )
    parts += _split_tables(summary, run)
    if run.profile is not None:
        recorded = run.profile.model_fields_set  # an older run's profile had fewer caps: its defaults are not shown
        caps = [(name, getattr(run.profile, name)) for name in type(run.profile).model_fields if name != "name" and name in recorded]
        rows = [[text(name), "no cap" if value is None else text(value)] for name, value in caps]
        parts.append(f"Budget profile {code(run.profile.name)}, shared by every strategy:")
        parts.append(table(["cap", "value"], rows))
    parts += [
        _options_table(summary),
        _tuning(summary),
        _calibration(summary),
        _resources(summary),
        _decision_cost(summary),
        _kept(summary),
    ]
    return "\n\n".join(part for part in parts if part)


def _resources(summary: Summary) -> str:
    """What each strategy's trials asked a Ray cluster for (CPU threads, GPU share); nothing for a local run."""
    asked: dict[str, set[tuple[float, float]]] = {}
    for trial in summary.trials:
        if trial.resources:
            asked.setdefault(trial.strategy, set()).add((trial.resources.get("CPU", 0.0), trial.resources.get("GPU", 0.0)))
    if not asked:
        return ""
    rows = [
        [text(strategy), ", ".join(number(cpu) for cpu, _ in sorted(shares)), ", ".join(number(gpu) for _, gpu in sorted(shares))]
        for strategy, shares in sorted(asked.items())
    ]
    return "\n\n".join(
        [
            "Trials ran as Ray tasks, each asking for these resources (a GPU share of 0: the strategy never uses a GPU; "
            "1: its memory estimate needs a whole GPU):",
            table(["strategy", "CPU threads", "GPU share"], rows),
        ]
    )


def _search_beyond_chosen(trial: TrialRecord) -> float:
    """Seconds the option search spent on the settings it did not choose (the chosen one's fit is training proper)."""
    if trial.tuning is None:
        return 0.0
    spent = [tried.seconds or 0.0 for tried in trial.tuning.tried]
    chosen = next((i for i, tried in enumerate(trial.tuning.tried) if tried.options == trial.tuning.chosen), None)
    return sum(spent) - (spent[chosen] if chosen is not None else 0.0)


def _decision_cost(summary: Summary) -> str:
    """What the whole decision cost in time: each trial's wall time summed, split into its parts.

    A strategy that combines others (its config names them as inputs) reports costs that include theirs:
    only its own wall time counts here, so nothing is counted twice.
    """
    trials = summary.trials
    if not trials:
        return ""
    walls: list[float] = []
    starts: list[str] = []
    ends: list[str] = []
    for trial in trials:
        wall = trial.wall_seconds  # set only when the trial's start and end are
        if wall is None or trial.started_at is None or trial.finished_at is None:
            return ""
        walls.append(wall)
        starts.append(trial.started_at)
        ends.append(trial.finished_at)
    own = [trial for trial in trials if not (trial.config and trial.config.inputs)]
    wall = sum(walls)
    train = sum(trial.cost.train_seconds or 0.0 for trial in own)
    predict = sum(trial.cost.predict_seconds or 0.0 for trial in own)
    search = sum(_search_beyond_chosen(trial) for trial in own)
    span = seconds_between(min(starts), max(ends))
    seeds = len(summary.seeds) or 1
    checks = sum(check.seconds or 0.0 for trial in trials for check in trial.deployment)
    after = (
        f" The deployment check after the trials took {number(checks)} s more (every quantized copy rebuilt, saved, scored and timed)."
        if checks
        else ""
    )
    return (
        f"What this decision cost: {plural(len(trials), 'trial')}, {number(wall)} s of trial wall time "
        f"({number(wall / seeds)} s per seed), each trial from its start to its record; {number(span)} s from the "
        f"first trial's start to the last one's end (trials run in parallel shorten it, pauses between resumed "
        f"commands lengthen it). Training {number(train)} s, of which {number(search)} s went to the option settings "
        f"the search tried and did not choose; prediction on the test split {number(predict)} s; the remaining "
        f"{number(max(wall - train - predict, 0.0))} s loaded models and data, saved what each trial learnt and measured "
        f"single-request latency (and, in runs recorded before the check moved after the trials, the deployment check). "
        f"One fit per trial (training without the unchosen settings, plus prediction): "
        f"{number(train - search + predict)} s. A strategy that combines others counts with its own time only.{after}"
    )


def _references(summary: Summary) -> str:
    references = summary.run.references if summary.run else []
    if not references:
        return ""
    rows = [[text(r.system), text(r.metric), r.value, text(r.source)] for r in references]
    return "\n\n".join(
        [
            "## Published reference points",
            "> **Reported elsewhere, not measured here.** These come from other papers or leaderboards, with other "
            "data splits, models and budgets: a rough scale for the numbers above, not a like-for-like comparison.",
            table(["system", "metric", "value", "source"], rows),
        ]
    )


def _hardware_rows(hardware: Hardware) -> list[tuple[str, Any]]:
    """CPU model, its bf16 matrix units and the matmul peaks measured when the run started."""
    features, peaks = hardware.cpu_features, hardware.matmul_peak_gflops
    units = [name for name, present in (("AMX", features and features.amx), ("AVX-512 BF16", features and features.avx512_bf16)) if present]
    return [
        ("CPU model", hardware.cpu_model),
        ("bf16 matrix units", (", ".join(units) or "none") if features is not None else None),
        ("matmul peak, measured at the start (GFLOP/s)", ", ".join(f"{dtype} {number(value)}" for dtype, value in peaks.items())),
    ]


def _accelerator_rows(environment: Environment) -> list[tuple[str, Any]]:
    """The GPU and the determinism settings of the trials' environment (nothing on a CPU-only run)."""
    gpu, determinism = environment.accelerator, environment.determinism
    if gpu is None:
        return []
    facts = [f"{gpu.memory_mb / 1024:.0f} GiB", f"compute capability {gpu.compute_capability}"]
    facts += [f"CUDA {gpu.cuda_version}"] * bool(gpu.cuda_version) + [f"driver {gpu.driver_version}"] * bool(gpu.driver_version)
    rows: list[tuple[str, Any]] = [("GPU", f"{gpu.count} x {gpu.name} ({', '.join(facts)})")]
    if determinism is not None:
        settings = [
            name
            for name, on in (
                ("deterministic algorithms", determinism.deterministic_algorithms),
                ("cuDNN deterministic", determinism.cudnn_deterministic),
                ("TF32 matmuls", determinism.tf32_matmul),
            )
            if on
        ]
        rows.append(("determinism", ", ".join(settings) or "none"))
    return rows


def _environment(summary: Summary) -> str:
    if summary.run is None:
        return ""
    models, environment = summary.run.models, summary.run.environment
    ran = [trial for trial in summary.trials if trial.models is not None]
    dtypes = sorted({trial.models.dtype for trial in ran if trial.models and trial.models.dtype}) or [models.dtype or ""]
    # As each trial that used the causal LM resolved it; "auto" is the record of a trial that did not, or of an older one.
    prompt_formats = {
        (used.causal_lm, used.prompt_format) for used in (trial.models for trial in ran) if used and used.prompt_format != "auto"
    }
    named = len({name for name, _ in prompt_formats}) > 1
    trial_environment = next((trial.environment for trial in ran if trial.environment.accelerator), environment)
    cores = environment.cpu_count
    items = [
        ("causal language model", ", ".join(models.causal_lm)),
        ("embedding model", ", ".join(models.embedding_model)),
        ("device", models.device),
        ("dtype", ", ".join(dtypes)),
        ("prompt format", ", ".join(f"{fmt} ({name})" if named else fmt for name, fmt in sorted(prompt_formats))),
        *_accelerator_rows(trial_environment),
        ("Python", environment.python),
        ("platform", environment.platform),
        ("CPU", environment.cpu and environment.cpu + (f" ({cores} cores)" if cores else "")),
        *(_hardware_rows(environment.hardware) if environment.hardware is not None else []),
    ]
    rows = [[name, text(value)] for name, value in items if value]
    packages = environment.packages
    parts = ["## Environment"]
    if rows:
        parts.append(table(["", "value"], rows))
    if packages:
        parts.append(table(["package", "version"], [[text(k), text(v)] for k, v in sorted(packages.items())]))
    return "\n\n".join(parts) if len(parts) > 1 else ""


def _settings(options: dict[str, OptionValue]) -> str:
    return ", ".join(f"{name}={number(value) if isinstance(value, float) else value}" for name, value in options.items())


def _tuning(summary: Summary) -> str:
    """The option search of each variant: what it tried on validation and what it chose (first seed)."""
    searched = [(entry, tuning) for entry in summary.entries if (tuning := entry.first.tuning) is not None]
    if not searched:
        return ""
    first_entry, first_tuning = searched[0]
    budget = first_tuning.budget
    rows = []
    for entry, tuning in searched:
        tried = "; ".join(
            f"{_settings(trial.options)}: {metric(trial.validation_accuracy) if trial.validation_accuracy is not None else trial.state}"
            for trial in tuning.tried
        )
        rows.append([entry.name, _settings(tuning.chosen), len(tuning.tried), tried])
    untuned = [entry.name for entry in summary.entries if entry.first.tuning is None]
    note = (
        f"Equal tuning: every strategy could try up to {budget} settings of the options it declares searchable, each fitted "
        f"on train and scored on the validation split only ({md.one_line(first_tuning.method)}). The chosen "
        "setting is the one scored on test; training time includes the whole search."
    )
    if untuned:
        note += f" Nothing to search for {', '.join(map(code, untuned))}."
    headers = ["strategy", "chosen", "settings tried", "validation accuracy of each (seed " + str(first_entry.first.seed) + ")"]
    return f"{note}\n\n" + table(headers, rows)


def _calibration(summary: Summary) -> str:
    """How the prompting strategies corrected the LM's answer bias."""
    calibrated = [(entry, calibration) for entry in summary.entries if (calibration := entry.first.calibration) is not None]
    if not calibrated:
        return ""
    described = []
    for entry, calibration in calibrated:
        if calibration.method == "none":
            described.append(f"{code(entry.name)}: not calibrated")
            continue
        source = "unlabelled train texts" if calibration.method == "batch" else "content-free inputs (N/A, empty, [MASK])"
        prior = "the train split's label frequencies" if calibration.prior else "equal label priors"
        described.append(f"{code(entry.name)}: bias measured on {source}, replaced by {prior}")
    return (
        "Calibrated prompting: a small LM prefers some answers whatever the text, so the strategies that prompt it divide "
        "that bias out of their label probabilities (batch calibration, Zhou et al. 2023; content-free calibration, Zhao "
        "et al. 2021) and put a prior in its place. " + "; ".join(described) + "."
    )


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _which_checked(summary: Summary, constraints: Constraints) -> str:
    """Which strategies the deployment check covered and why (``--deployment-check``)."""
    from slmbench.report.contenders import FRONTS, contenders

    which = summary.run.options.deployment_check if summary.run and summary.run.options else None
    checked = [entry.name for entry in summary.entries if any(trial.deployment for trial in entry.trials)]
    if which != "contenders":
        return f"Checked: every strategy with weights to quantize ({code('--deployment-check all')})." if which == "all" else ""
    reasons = contenders(summary, constraints)
    described = "; ".join(f"{code(name)} ({', '.join(why)})" for name, why in reasons.items())
    others = [entry.name for entry in summary.entries if entry.name not in reasons and entry.name not in checked]
    sentence = (
        f"With {code('--deployment-check contenders')} the check covers the contenders: the recommended strategy, those "
        f"not significantly worse than it (its tie test), those on a Pareto front of accuracy against {', '.join(FRONTS)} "
        f"(no other is as accurate and as cheap) and the members of a combining contender: {described}. "
    )
    contenders_checked = [name for name in checked if name in reasons]
    sentence += (
        f"Checked: {', '.join(map(code, contenders_checked))}; the other contenders have no weights to quantize "
        "(or the check has not run yet)."
        if contenders_checked
        else "None of them has been checked: none has weights to quantize (or the check has not run yet)."
    )
    if others:
        recommended = recommend(summary, constraints).choice is not None
        why = "significantly worse than the recommendation and off every front" if recommended else "off every front"
        listed = ", ".join(map(code, others))
        sentence += f" Not contenders ({why}), not checked: {listed}; {code('--deployment-check all')} checks them too."
    stale = [name for name in checked if name not in reasons]
    if stale:
        sentence += f" Checked as well, though not contenders now: {', '.join(map(code, stale))}."
    return sentence


def deployment(summary: Summary, constraints: Constraints) -> str:
    """Each weight-updating contender's model rebuilt unquantized and quantized, scored on the same test split."""
    rows = []
    for entry in summary.entries:
        by_quantization: dict[str, list[Any]] = {}
        for trial in entry.trials:
            for check in trial.deployment:
                by_quantization.setdefault(check.quantization, []).append(check)
        for quantization, checks in by_quantization.items():
            done = [check for check in checks if check.error is None]
            if not done:
                rows.append([entry.name, code(quantization), *[MISSING] * 6, text(md.first_line(checks[0].error))])
                continue
            accuracy = _mean([check.accuracy for check in done])
            rows.append(
                [
                    entry.name,
                    code(quantization),
                    metric(accuracy),
                    MISSING if accuracy is None else f"{accuracy - entry.accuracy:+.3f}",
                    metric(_mean([check.macro_f1 for check in done])),
                    md.size(_mean([check.size_bytes for check in done])),
                    number(_mean([check.latency_ms_per_example for check in done])),
                    number(_mean([check.single_request.p95_ms if check.single_request else None for check in done])),
                    "",
                ]
            )
    parity = export_parity(summary)
    which = _which_checked(summary, constraints)
    if not rows:
        parts = [part for part in (which if summary.entries else "", parity) if part]
        return "\n\n".join(["## Deployment check", *parts]) if parts else ""
    headers = [
        "strategy",
        "weights",
        "accuracy",
        "vs trained",
        "macro-F1",
        "size on disk",
        "latency (ms/example)",
        "single request p95 (ms)",
        "error",
    ]
    return "\n\n".join(
        [
            "## Deployment check",
            *([which] if which else []),
            "Each checked strategy's trained model rebuilt from its checkpoint, unquantized (the run's dtype: "
            "the reference, measured alongside) and quantized, and scored on the same test split through the same "
            "prediction path. `int8`: on CPU torchao's dynamic int8 (int8 weights, activations quantized per token), on "
            "CUDA bitsandbytes' LLM.int8; `nf4`: bitsandbytes' 4-bit NormalFloat with double quantization. Embeddings, "
            "norms and output heads stay unquantized; an unmerged adapter, a soft prompt or bottleneck adapters are put "
            "back in full precision. Size on disk: the copy saved as safetensors, those parts included. qlora is checked "
            "in its own 4-bit form only.",
            table(headers, rows),
            "No GGUF export: no maintained PyPI package converts a transformers model to GGUF here (`gguf` reads and "
            "writes the file format but has no model converter; llama.cpp's `convert_hf_to_gguf.py` is not packaged "
            "by its authors).",
            *([parity] if parity else []),
        ]
    )


FORM_NAMES = {
    "slmbench": "slmbench (`slmbench predict EXPORT_DIR`)",
    "skops-pipeline": "scikit-learn pipeline (skops)",
    "sentence-transformers-skops": "sentence-transformers + skops head",
    "transformers-sequence-classification": "transformers sequence classification",
    "onnx-sequence-classification": "ONNX (onnxruntime)",
    "transformers-causal-lm": "transformers causal LM (+ PEFT adapter)",
}


def export_parity(summary: Summary) -> str:
    """The export check (``export_check.json``): each exported form reloaded from the export alone,
    its agreement with the trial's own test predictions, accuracy, size and single-request latency."""
    folder = summary.folder
    if folder.export_problem:
        return f"### Exported forms\n\nThe export check could not be read: {text(md.first_line(folder.export_problem))}"
    checks = folder.export_checks
    if checks is None or not checks.trials:
        return ""
    rows = []
    for trial in checks.trials:
        name = f"{text(trial.name)} (seed {trial.seed})"
        if trial.error:
            rows.append([name, *[MISSING] * 7, text(md.first_line(trial.error))])
        for form in trial.forms:
            latency = form.single_request.p50_ms if form.single_request else None
            agreement = MISSING if form.agreement is None else f"{form.agreement:.1%}"
            rows.append(
                [
                    name,
                    FORM_NAMES.get(form.kind, form.kind),
                    code(form.path),
                    code(form.quantization or "as trained"),
                    agreement,
                    metric(form.accuracy),
                    md.size(form.size_bytes),
                    number(latency),
                    text(md.first_line(form.error)) if form.error else "",
                ]
            )
    which = (
        "the recommended strategy's trial (at its seed best on validation)" if checks.checked == "recommended" else "every reusable trial"
    )
    failed = any(trial.error for trial in checks.trials) or any(form.error for trial in checks.trials for form in trial.forms)
    exact = all(form.agreement == 1 for trial in checks.trials for form in trial.forms if form.quantization is None and form.error is None)
    verdict = (
        "**An unquantized form disagrees with its trial on some test examples**: what ships is not exactly what was measured."
        if not exact
        else "**Some exports or forms failed** (the error column says why); every other unquantized form agrees with its trial."
        if failed
        else "Every unquantized form agrees with the trial on every test example."
    )
    headers = ["trial", "form", "path", "weights", "agreement", "accuracy", "size on disk", "single request p50 (ms)", "error"]
    return "\n\n".join(
        [
            "### Exported forms",
            f"Parity of what `slmbench export` ships: {which} exported to a temporary folder, each form reloaded from the "
            "export alone (a fresh load, no state of the run) by the library that form is for, and scored on the same "
            "test split. Agreement: the share of test examples on which it predicts the trial's own label. "
            f"{verdict}" + (" `--export-check all` checks every trial." if checks.checked == "recommended" else ""),
            table(headers, rows),
        ]
    )


def _kept(summary: Summary) -> str:
    """How many trials' artifacts the run folder kept for ``slmbench predict``, and their size beside the records'."""
    directory = summary.directory
    keys = [
        file.key
        for file in summary.folder.trials
        if file.record and file.record.ok and file.record.train_size is None  # learning-curve points keep no model
    ]
    kept = [key for key in keys if (directory / "artifacts" / key / TASK_COPY).is_file()]  # what slmbench predict can reload
    artifacts = sum(folder_bytes(directory / "artifacts" / key) for key in kept)
    return (
        f"Kept in this run folder for `slmbench predict`: the artifacts of {len(kept)} of its "
        f"{plural(len(keys), 'finished trial')}, {md.size(artifacts)}, beside {md.size(folder_bytes(directory / 'trials'))} "
        "of trial records (`slmbench run --keep-artifacts none` keeps no artifact)."
    )


def sections(summary: Summary) -> list[str]:
    """The reference sections, in report order."""
    return [_data_protocol(summary), _references(summary), _environment(summary)]
