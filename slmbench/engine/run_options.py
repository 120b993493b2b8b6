"""What a run is asked to do (``RunOptions``) and the checks of its arguments, made before any model
loads: the task's path, the strategies and their option grid, seeds, time limit, data folder, device,
models, train sizes and the run folder. A wrong one is a ``RunError`` naming it.

``slmbench.engine.planning`` calls them while it plans the run.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from slmbench import records
from slmbench.lm.embedded import EMBEDDED, EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL
from slmbench.lm.models import not_a_device
from slmbench.strategy.registry import Registry
from slmbench.tasks.profiles import Budget, get_profile

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""What a run id may be: it names a folder inside ``--output`` (no separators, no ``..``)."""


class RunError(ValueError):
    """An argument or option of the run is wrong; the message names it and the problem."""


class RunOptions(records.RunOptionsRecord):
    """What a run is asked to do: run.json stores every field but ``allow_outside_data_dir``, so ``--resume``
    can repeat it; the models default to the embedded ones."""

    models: list[str] = Field(default_factory=lambda: [EMBEDDED_CAUSAL_LM])
    embedding_models: list[str] = Field(default_factory=lambda: [EMBEDDED_EMBEDDING_MODEL])
    deployment_check: Literal["contenders", "all", "none"] | None = "contenders"
    allow_outside_data_dir: bool = Field(False, exclude=True)
    """Let the task read a data file outside the data folder and its own folder (not stored: ``--resume`` asks again)."""


def resolve_task_path(name_or_path: str, registry: Registry) -> Path:
    """A YAML path as given, or the path of a task registered under that name."""
    if "\x00" in name_or_path:  # only a file (run.json, a sweep) can hold one; no path can
        raise RunError(f"task {name_or_path[:60]!r}: a NUL character in a file name")
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or os.sep in name_or_path or os.path.lexists(name_or_path):
        return path
    return registry.task_path(name_or_path)


def select_strategies(spec: str, registry: Registry) -> list[str]:
    """``all`` (every registered strategy, in name order) or a comma-separated list."""
    if spec.strip() == "all":
        return sorted(registry.strategies)
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    if not names:
        raise RunError(f"--strategies {spec!r} names no strategy: give 'all' or a comma-separated list")
    for name in names:
        registry.strategy(name)  # raises with a "did you mean" for unknown names
    return names


def parse_int_list(spec: str, what: str, allow_all: bool = False) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2] (sorted, distinct); ``all`` is skipped where allowed; anything else is a RunError."""
    values: set[int] = set()
    for item in spec.split(","):
        item = item.strip().lower()
        if allow_all and item == "all":
            continue
        if not (item.isascii() and item.isdigit()):
            raise RunError(f"{what} {item[:40]!r} is not a whole number" + (" or 'all'" if allow_all else ""))
        if len(item) > 10 or int(item) >= 2**32:
            raise RunError(f"{what} {item[:40]}: too large (the largest is {2**32 - 1})")
        values.add(int(item))
    if not values and not allow_all:
        raise RunError(f"{what}: give at least one number")
    return sorted(values)


def default_run_id(options: RunOptions) -> str:
    """The profile, plus a short hash when the models are not the defaults.

    The same command therefore writes into the same folder, which is what makes rerunning it resume
    (more seeds, strategies or train sizes are added to the folder).
    """
    models = (options.models, options.embedding_models)
    if models == ([EMBEDDED_CAUSAL_LM], [EMBEDDED_EMBEDDING_MODEL]):
        return options.profile
    return options.profile + "-" + hashlib.sha256(repr(models).encode()).hexdigest()[:6]


def run_folder(options: RunOptions, task_name: str) -> Path:
    """``<output>/<task>/<run id>``, once the run id is a valid folder name and the folder is usable."""
    from slmbench.common.files import folder_problem

    run_id = default_run_id(options) if options.run_id is None else options.run_id
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise RunError(f"--run-id {run_id[:140]!r}: use letters, digits, '_', '-' or '.' (it names a folder inside --output)")
    problem = folder_problem(Path(options.output) / task_name / run_id)
    if problem:
        raise RunError(f"--output {options.output}: {problem}")
    return Path(options.output) / task_name / run_id


def options_from_run_dir(run_dir: Path, **overrides: Any) -> RunOptions:
    """The options a run was started with, read back from its run.json (for ``--resume``); what it does
    not record (an opt-in such as ``allow_outside_data_dir`` never is) takes the default."""
    from pydantic import ValidationError

    run = records.read_run(Path(run_dir))
    folder = Path(run_dir).resolve()  # `--resume .` names the folder too
    if folder.parent.name != run.task:  # the run would go to <output>/<task>/<run id>, not here
        raise RunError(
            f"--resume {run_dir}: a run folder of task {run.task[:60]!r} must sit in a folder named after "
            "the task (<output>/<task>/<run id>); move it back there"
        )
    saved = run.options.model_dump(exclude_none=True) if run.options is not None else {}  # None: not recorded, or the default
    if run.task_path:
        saved["task"] = run.task_path
    try:
        saved_options = RunOptions.model_validate(saved)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        where = ".".join(["options", *map(str, problem["loc"])])
        raise records.RecordError(f"{Path(run_dir) / 'run.json'}: damaged run record: field {where!r}: {problem['msg']}") from None
    options = saved_options.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    options.output, options.run_id = str(folder.parent.parent), folder.name
    return options


def option_grid(options: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the option values: {"r": [4, 16]} -> [{"r": 4}, {"r": 16}]."""
    names = sorted(options)
    return [dict(zip(names, values)) for values in itertools.product(*(options[name] for name in names))]


def check_option_grid(options: dict[str, dict[str, list[Any]]], strategies: list[str], registry: Registry) -> None:
    """Options are set only for the run's strategies, and each setting of their grid is one the strategy accepts."""
    from slmbench.common.options import build_options

    for strategy, values in options.items():
        registry.strategy(strategy)  # an unknown name raises, with a "did you mean"
        if strategy not in strategies:
            raise RunError(f"options set for {strategy!r}, which is not among the run's strategies ({', '.join(strategies)})")
        for point in option_grid(values):
            build_options(strategy, registry.strategy(strategy).Options, point)


def check_device_and_models(options: RunOptions, used: tuple[bool, bool] = (True, True)) -> None:
    """Device and model names are checked before anything loads: a device torch knows, and models that
    are a local folder, embedded (of the right kind, their packages installed) or a hub id (``name``
    or ``namespace/name``). ``used``: whether the run's strategies use the causal LM, the embedding
    model: an embedded model they do not use need not be installed (the defaults, often)."""
    if options.device != "auto" and (problem := not_a_device(options.device)):
        raise RunError(problem)
    for option, names, kind, default, needed in (
        ("--model", options.models, "causal LM", EMBEDDED_CAUSAL_LM, used[0]),
        ("--embedding-model", options.embedding_models, "embedding", EMBEDDED_EMBEDDING_MODEL, used[1]),
    ):
        for name in names:
            if os.path.isdir(os.path.expanduser(name)):  # a folder of that name is what the user means
                continue
            if (embedded := EMBEDDED.get(name)) is not None:
                if embedded.kind != kind:
                    other = "--model" if option == "--embedding-model" else "--embedding-model"
                    raise RunError(f"{option} {name}: that embedded model ({embedded.kind}) goes with {other} (`slmbench list models`)")
                if needed and not embedded.installed():
                    raise RunError(f"{option} {name}: the embedded model is not installed; install it with: {embedded.install}")
                continue
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(name)
            except HFValidationError:
                raise RunError(
                    f"{option} {name[:80]!r}: no such folder, and not a hub model id "
                    f"('name' or 'namespace/name'; the default is {default!r}; `slmbench list models` lists the embedded ones)"
                ) from None


def check_prompt_format(options: RunOptions, prompts_causal_lm: bool) -> None:
    """``--prompt-format chat`` needs a chat template: each causal LM is checked now, by its tokenizer alone,
    rather than in every trial (one whose tokenizer cannot be loaded here is checked by its trials)."""
    if options.prompt_format != "chat" or not prompts_causal_lm:
        return
    from slmbench.lm.models import SharedModels
    from slmbench.lm.prompt_format import PromptFormatError

    for name in options.models:
        models = SharedModels(causal_lm_name=name, trust_remote_code=options.trust_remote_code, prompt_format="chat")
        try:
            models.resolved_prompt_format()
        except PromptFormatError as error:
            raise RunError(str(error)) from None
        except Exception:  # noqa: BLE001 - not loadable here (offline, gated...): its trials load it and say
            continue


def run_budget(options: RunOptions) -> Budget:
    """The profile's budget, with ``--tuning-trials`` in place of its own if given."""
    try:
        budget = get_profile(options.profile)
    except ValueError as error:
        raise RunError(f"--profile: {error}") from None
    if options.tuning_trials is not None:
        if options.tuning_trials < 1:
            raise RunError(f"--tuning-trials {options.tuning_trials}: must be 1 (defaults only) or more")
        budget = budget.model_copy(update={"tuning_trials": options.tuning_trials})
    return budget


def check_seeds_and_timeout(options: RunOptions) -> None:
    """At least one seed, and a time limit per trial (if any) above zero."""
    if not options.seeds:
        raise RunError("--seeds: give at least one seed")
    if options.trial_timeout is not None and options.trial_timeout <= 0:
        raise RunError(f"--trial-timeout {options.trial_timeout:g}: must be a positive number of seconds")


def data_folder(options: RunOptions) -> Path | None:
    """The data folder (``--data-dir``, else ``$SLMBENCH_DATA_DIR``), which must be a folder; None if neither is set."""
    from slmbench.tasks.sources import resolve_data_dir

    data_dir = resolve_data_dir(options.data_dir)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise RunError(f"--data-dir {data_dir}: not a folder")
    return data_dir


def check_train_sizes(sizes: list[int], n_labels: int, n_train: int, profile: str) -> None:
    """Every learning-curve size must allow an example per label and be smaller than the train split."""
    too_small = [size for size in sizes if size < n_labels]
    if too_small:
        raise RunError(f"--train-sizes {too_small[0]}: fewer examples than the task's {n_labels} labels")
    too_large = [size for size in sizes if size >= n_train]
    if too_large:
        raise RunError(
            f"--train-sizes {', '.join(map(str, too_large))}: the train split has only {n_train} examples "
            f"(profile {profile}); use smaller sizes ('all' always runs the whole split)"
        )
