"""A run: one task, several strategies, one shared protocol; trials written as they finish."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from slmbench.environment import collect_environment
from slmbench.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL, choose_device, choose_dtype
from slmbench.plugins import Registry
from slmbench.profiles import get_profile
from slmbench.progress import ProgressReporter
from slmbench.tasks import TaskSpec, load_task
from slmbench.trial import SCHEMA_VERSION, TrialConfig, Workspace, run_trial, write_json_atomic


@dataclass
class RunOptions:
    task: str
    strategies: str = "all"
    profile: str = "quick"
    data_dir: str | None = None
    output: str = "runs"
    seed: int = 0
    model: str = EMBEDDED_CAUSAL_LM
    embedding_model: str = EMBEDDED_EMBEDDING_MODEL
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    run_id: str | None = None
    trial_timeout: float | None = None
    train_sizes: str | None = None
    """Learning curve: comma-separated train sizes (``16,64,256,all``) each strategy also runs at."""


@dataclass
class RunResult:
    """Where a run went and which trials it ran now or reused from an earlier, matching run."""

    run_dir: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    interrupted: bool = False


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run; finished trials and the report are on disk."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"run interrupted; resume with: slmbench run --resume {result.run_dir}")
        self.result = result


def resolve_task_path(name_or_path: str, registry: Registry) -> Path:
    """A YAML path as given, or the path of a task registered under that name."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return registry.task_path(name_or_path)


def select_strategies(spec: str, registry: Registry) -> list[str]:
    """``all`` (every registered strategy, in name order) or a comma-separated list."""
    if spec == "all":
        return sorted(registry.strategies)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        registry.strategy(name)  # raises with a "did you mean" for unknown names
    return names


def parse_train_sizes(spec: str | None) -> list[int]:
    """The smaller train sizes of a ``--train-sizes`` list, ascending (``all``, the whole split, always runs)."""
    sizes: set[int] = set()
    for item in (spec or "").split(","):
        item = item.strip().lower()
        if item in {"", "all"}:
            continue
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"train size {item!r} is not a positive whole number or 'all' (e.g. 16,64,256,all)")
        sizes.add(int(item))
    return sorted(sizes)


def trial_key(strategy: str, train_size: int | None) -> str:
    """A trial's path under ``trials/`` (plus ``.json``) and ``artifacts/``; learning-curve points get a sub-folder."""
    return strategy if train_size is None else f"train-{train_size}/{strategy}"


def default_run_id(options: RunOptions) -> str:
    """``<profile>-seed<seed>``, plus a short hash when the models are not the defaults.

    The same command therefore writes into the same folder, which is what makes rerunning it resume.
    """
    run_id = f"{options.profile}-seed{options.seed}"
    if (options.model, options.embedding_model) != (EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL):
        run_id += "-" + hashlib.sha256(f"{options.model}|{options.embedding_model}".encode()).hexdigest()[:6]
    return run_id


def options_from_run_dir(run_dir: Path, **overrides: Any) -> RunOptions:
    """The options a run was started with, read back from its run.json (for ``--resume``)."""
    run_file = Path(run_dir) / "run.json"
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} does not exist: not a slmbench run folder")
    saved = json.loads(run_file.read_text())["options"]
    return RunOptions(**{**saved, **{k: v for k, v in overrides.items() if v is not None}})


def _finished_trial(path: Path, config: TrialConfig) -> dict | None:
    """The trial record at ``path`` if it finished ``ok`` with exactly this config, else None."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") == "ok" and record.get("config_hash") == config.config_hash():
        return record
    return None


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt for the duration of a run.

    SIGINT included: a process started in the background by a non-interactive shell inherits SIGINT
    ignored, and Python then leaves it ignored, so Ctrl-C (or ``kill -INT``) would not stop the run.
    """
    stopping = (signal.SIGINT, signal.SIGTERM)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        previous = {signum: signal.signal(signum, interrupt) for signum in stopping}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_or_reuse(
    config: TrialConfig,
    run_dir: Path,
    workspace: Workspace,
    timeout: float | None,
    result: RunResult,
    on_trial: Callable[[dict, bool], None],
) -> None:
    """Reuse the trial's finished record if its config matches, else run it and write its record.

    A learning-curve point keeps its record but not its trained artifact (models add up fast).
    """
    name = trial_key(config.strategy, config.train_size)
    trial_file = run_dir / "trials" / f"{name}.json"
    if (record := _finished_trial(trial_file, config)) is not None:
        result.reused.append(name)
        on_trial(record, True)
        return
    artifact_dir = run_dir / "artifacts" / name
    record = run_trial(config, workspace, artifact_dir, timeout)
    write_json_atomic(trial_file, record)
    if config.train_size is not None:
        shutil.rmtree(artifact_dir, ignore_errors=True)
    result.ran.append(name)
    on_trial(record, False)
    if record["status"] == "cancelled":
        raise KeyboardInterrupt


def run_benchmark(
    options: RunOptions,
    registry: Registry,
    progress: ProgressReporter,
    on_trial: Callable[[dict, bool], None] = lambda record, reused: None,
    constraints: Any = None,
) -> RunResult:
    """Run every selected strategy as an isolated trial, write each trial and the report.

    The task and its data are validated before any model is loaded. ``constraints``
    (``slmbench.report.Constraints``) shape the report's recommendation. Trials already in the run
    folder with status ``ok`` and the same config are reused, not rerun. On Ctrl-C or SIGTERM the
    running trial is recorded as ``cancelled``, the report is rendered from what exists, and
    RunInterrupted is raised.
    """
    from slmbench.data import resolve_data_dir
    from slmbench.report import Constraints, render_report

    budget = get_profile(options.profile)
    task_path = resolve_task_path(options.task, registry)
    task: TaskSpec = load_task(task_path)
    strategies = select_strategies(options.strategies, registry)
    train_sizes = parse_train_sizes(options.train_sizes)
    data_dir = resolve_data_dir(options.data_dir)
    device = choose_device(options.device)
    base_config = TrialConfig(
        strategy="",
        task_path=str(task_path),
        data_dir=str(data_dir) if data_dir else None,
        profile=budget.to_dict(),
        seed=options.seed,
        models={
            "causal_lm_name": options.model,
            "embedding_model_name": options.embedding_model,
            "device": device,
            "dtype": choose_dtype(options.dtype, device),
            "trust_remote_code": options.trust_remote_code,
        },
    )
    workspace = Workspace(registry, progress)
    splits = workspace.splits(task, base_config)
    run_id = options.run_id or default_run_id(options)
    result = RunResult(Path(options.output) / task.name / run_id)
    run_dir = result.run_dir
    earlier = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    command = shlex.join(["slmbench", *sys.argv[1:]])
    earlier_commands = earlier.get("commands") or ([earlier["command"]] if "command" in earlier else [])
    write_json_atomic(
        run_dir / "run.json",
        {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "task": task.name,
            "task_path": str(task_path),
            "command": command,
            "commands": list(dict.fromkeys([*earlier_commands, command])),  # in first-run order
            "options": {**asdict(options), "run_id": run_id, "output": str(options.output)},
            "profile": budget.to_dict(),
            "seed": options.seed,
            "labels": task.label_names,
            "strategies": list(dict.fromkeys([*earlier.get("strategies", []), *strategies])),
            "splits": splits.summary(),
            "data": splits.provenance,
            "models": {
                "causal_lm": options.model,
                "embedding_model": options.embedding_model,
                "device": device,
                "dtype": base_config.models["dtype"],
            },
            "references": [vars(reference) for reference in task.references],
            "environment": collect_environment(),
            "started_at": earlier.get("started_at", datetime.now(timezone.utc).isoformat(timespec="seconds")),
        },
    )
    write_json_atomic(run_dir / "test_texts.json", list(splits.test.texts))

    with _signals_as_interrupt():
        try:
            # The whole train split first (the leaderboard), then the learning curve's smaller sizes.
            n_train = len(splits.train)
            for size in [None, *(n for n in train_sizes if n < n_train)]:
                for name in strategies:
                    if size is not None and not registry.strategy(name).learns_from_train:
                        continue
                    config = replace(
                        base_config, strategy=name, strategy_version=registry.strategies[name].distribution, train_size=size
                    )
                    _run_or_reuse(config, run_dir, workspace, options.trial_timeout, result, on_trial)
        except KeyboardInterrupt:
            result.interrupted = True
        render_report(run_dir, constraints or Constraints())
    if result.interrupted:
        raise RunInterrupted(result)
    return result
