"""Planning a run: the trials it consists of (``plan_run``): one task, its strategies x option settings
x seeds x models x train sizes, one protocol, and its record (run.json).

Every argument, the task, its data, the strategies' options, seeds, sizes and the run folder are
validated first (``slmbench.engine.run_options``); a wrong one is a ``RunError`` naming it.
``slmbench.engine.runner`` runs the plan.
"""

from __future__ import annotations

import hashlib
import itertools
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench import records
from slmbench.engine.run_options import (
    RunOptions,
    check_device_and_models,
    check_option_grid,
    check_prompt_format,
    check_seeds_and_timeout,
    check_train_sizes,
    data_folder,
    option_grid,
    resolve_task_path,
    run_budget,
    run_folder,
    select_strategies,
)
from slmbench.lm.models import SharedModel
from slmbench.records import ModelsConfig, RunRecord, TrialConfig, TrialRecord
from slmbench.strategy.base import CombiningStrategy, Strategy
from slmbench.strategy.registry import Registry
from slmbench.tasks.spec import TaskSpec, load_task

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import MemoryRequest
    from slmbench.tasks.splits import Splits


@dataclass
class PlannedTrial:
    """A trial of the run: where it goes, what it runs, and under which name the report shows it."""

    key: str
    variant: str
    config: TrialConfig
    strategy: type[Strategy]
    run_dir: Path
    members: list[TrialRecord] = field(default_factory=list)
    """For a strategy that combines others: their finished records, filled in when they are done."""

    @property
    def file(self) -> Path:
        return records.trial_file(self.run_dir, self.key)

    @property
    def artifact_dir(self) -> Path:
        return self.run_dir / "artifacts" / self.key

    def memory_request(self) -> MemoryRequest:
        """What ``Strategy.estimate_memory`` needs to know of this trial (its options validated), as planned."""
        from slmbench.common.options import build_options
        from slmbench.lm.memory_estimate import MemoryRequest

        options = build_options(self.config.strategy, self.strategy.Options, self.config.options)
        return MemoryRequest.for_trial(self.config, options)


@dataclass
class RunPlan:
    """A validated run: its folder, its record (run.json) and every trial, finished or not."""

    run_dir: Path
    run: RunRecord
    trials: list[PlannedTrial]
    test_texts: list[str]


def variant_name(strategy: str, varying: dict[str, Any]) -> str:
    """``lora`` or, when the sweep varies some of its settings, ``lora[learning_rate=0.001,r=4]``."""
    if not varying:
        return strategy
    return f"{strategy}[{','.join(f'{name}={value}' for name, value in sorted(varying.items()))}]"


def _typed(strategy: str, cls: type[Strategy], point: dict[str, Any]) -> dict[str, Any]:
    """The option values as the strategy's Options types them ("3" from the command line -> 3), so the
    same setting hashes the same whether it came from ``--set`` or a sweep file."""
    from slmbench.common.options import build_options

    typed = build_options(strategy, cls.Options, point).model_dump(mode="json")
    return {name: typed[name] for name in point}


def majority_floor(splits: Splits, label_names: list[str]) -> records.Floors:
    """Accuracy and macro-F1 on test of always answering the train split's most frequent label."""
    from collections import Counter

    from slmbench.engine.metrics import classification_metrics

    majority = Counter(splits.train.labels).most_common(1)[0][0]
    metrics = classification_metrics(splits.test.labels, [majority] * len(splits.test), label_names)
    return records.Floors(majority_label=label_names[majority], accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"])


def plan_run(options: RunOptions, registry: Registry) -> RunPlan:
    """Validate the run's arguments, task and data, and list its trials; no model is loaded."""
    from slmbench.engine.model_cache import ModelCache
    from slmbench.lm.models import choose_device

    budget = run_budget(options)
    task_path = resolve_task_path(options.task, registry).resolve()
    task = load_task(task_path)
    strategies = select_strategies(options.strategies, registry)
    check_option_grid(options.options, strategies, registry)
    check_seeds_and_timeout(options)
    data_dir = data_folder(options)
    depends_on = {model for name in strategies for model in registry.strategy(name).metadata.depends_on}
    check_device_and_models(options, (SharedModel.CAUSAL_LM in depends_on, SharedModel.EMBEDDER in depends_on))
    check_prompt_format(options, SharedModel.CAUSAL_LM in depends_on)
    device = choose_device(options.device)
    run_dir = run_folder(options, task.name)

    base = TrialConfig(
        strategy="",
        task=task.name,
        task_path=str(task_path),
        task_sha256=hashlib.sha256(task_path.read_bytes()).hexdigest(),
        data_dir=str(data_dir.resolve()) if data_dir else None,
        allow_outside_data_dir=options.allow_outside_data_dir,
        profile=budget,
        # dtype "auto" is resolved by each trial on the GPU it runs on (``SharedModels``), not here
        models=ModelsConfig(
            causal_lm="", embedding_model="", device=device, dtype=options.dtype, trust_remote_code=options.trust_remote_code
        ),
    )
    splits = ModelCache(progress=None).splits(task, base)  # validates the data before anything runs
    base = base.model_copy(update={"data_sha256": splits.provenance.content_sha256})
    check_train_sizes(options.train_sizes, len(task.labels), len(splits.train), budget.name)
    trials = _plan_trials(options, registry, strategies, base, run_dir)
    return RunPlan(run_dir, _run_record(options, task, base, run_dir, strategies, splits), trials, list(splits.test.texts))


def _plan_trials(options: RunOptions, registry: Registry, strategies: list[str], base: TrialConfig, run_dir: Path) -> list[PlannedTrial]:
    """Every trial of the run, strategy by strategy; a combining strategy's config holds its members' hashes."""
    trials = [planned for name in strategies for planned in _strategy_trials(name, options, registry, base, run_dir)]
    for planned in trials:
        if issubclass(planned.strategy, CombiningStrategy):
            inputs = {other.key: other.config.config_hash() for other in member_trials(planned, trials)}
            planned.config = planned.config.model_copy(update={"inputs": inputs})
    return trials


def _strategy_trials(name: str, options: RunOptions, registry: Registry, base: TrialConfig, run_dir: Path) -> list[PlannedTrial]:
    """One strategy's trials: its option settings x the models it uses x seeds x train sizes."""
    cls = registry.strategy(name)
    grid = options.options.get(name, {})
    varying = {option for option, values in grid.items() if len(values) > 1}
    model_axes = {
        "model": options.models if SharedModel.CAUSAL_LM in cls.metadata.depends_on else [""],
        "embedding_model": options.embedding_models if SharedModel.EMBEDDER in cls.metadata.depends_on else [""],
    }
    sizes = [None, *options.train_sizes] if cls.metadata.reads_labels else [None]
    points = [_typed(name, cls, point) for point in option_grid(grid)]
    trials = []
    for point, causal_lm, embedder, seed, size in itertools.product(
        points, model_axes["model"], model_axes["embedding_model"], options.seeds, sizes
    ):
        label = {key: point[key] for key in varying}
        if len(options.models) > 1 and causal_lm:
            label["model"] = causal_lm
        if len(options.embedding_models) > 1 and embedder:
            label["embedding_model"] = embedder
        variant = variant_name(name, label)
        config = base.model_copy(
            update={
                "strategy": name,
                "seed": seed,
                "options": point,
                "train_size": size,
                "code_version": registry.code_version(name),
                "models": base.models.model_copy(
                    update={
                        "causal_lm": causal_lm,
                        "embedding_model": embedder,
                        # only a strategy that prompts or trains the causal LM is another trial in another prompt format
                        "prompt_format": options.prompt_format if causal_lm else "auto",
                    }
                ),
            }
        )
        trials.append(PlannedTrial(records.trial_key(variant, seed, size), variant, config, cls, run_dir))
    return trials


def _run_record(options: RunOptions, task: TaskSpec, base: TrialConfig, run_dir: Path, strategies: list[str], splits: Splits) -> RunRecord:
    """``run.json``: what the run's trials share (``base``), added to the record of an earlier run in ``run_dir``."""
    from slmbench.engine.environment import collect_environment

    earlier = records.read_run(run_dir) if (run_dir / "run.json").exists() else None
    command = shlex.join(["slmbench", *sys.argv[1:]])
    return RunRecord(
        run_id=run_dir.name,
        task=task.name,
        task_path=base.task_path,
        commands=list(dict.fromkeys([*(earlier.commands if earlier else []), command])),  # in first-run order
        options=options.model_copy(update={"task": base.task_path, "run_id": run_dir.name, "data_dir": base.data_dir}),
        profile=base.profile,
        seeds=sorted({*(earlier.seeds if earlier else []), *options.seeds}),
        labels=task.label_names,
        strategies=list(dict.fromkeys([*(earlier.strategies if earlier else []), *strategies])),
        splits=records.SplitSummary(**splits.summary()),
        data=splits.provenance.model_copy(update={"file": splits.provenance.file and Path(splits.provenance.file).name}),
        floors=majority_floor(splits, task.label_names),
        models=records.RunModels(
            causal_lm=options.models, embedding_model=options.embedding_models, device=base.models.device, dtype=base.models.dtype
        ),
        references=list(task.references),
        environment=collect_environment(base.models.device, measure_peaks=True),
        started_at=earlier.started_at if earlier else datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def member_trials(planned: PlannedTrial, trials: list[PlannedTrial]) -> list[PlannedTrial]:
    """The trials a combining strategy combines: every other strategy's trial of the same seed and train size."""
    return [
        other
        for other in trials
        if not issubclass(other.strategy, CombiningStrategy)
        and other.config.seed == planned.config.seed
        and other.config.train_size == planned.config.train_size
    ]
