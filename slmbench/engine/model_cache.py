"""What every trial of a run shares, loaded once per process and kept between trials: the shared
models (one copy of each model per name, device and dtype, whichever configurations name it), the
task's splits and the environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.engine.environment import collect_environment
from slmbench.lm.models import LoadedModels, SharedModels

if TYPE_CHECKING:
    from slmbench.common.progress import ProgressReporter
    from slmbench.records import Budget, Environment, TrialConfig
    from slmbench.tasks.spec import TaskSpec


class ModelCache:
    """Per-process cache of what every trial of a run shares: the shared models of each models
    configuration, the task's splits and the environment, each loaded once."""

    def __init__(self, progress: ProgressReporter | None) -> None:
        from slmbench.common.progress import quiet_libraries

        if progress is not None:
            quiet_libraries(progress.enabled)
        self.progress = progress
        self._splits: dict[tuple[str, str | None, bool, Budget], Any] = {}
        self._models: dict[str, SharedModels] = {}
        self._loaded: LoadedModels = {}
        self._environments: dict[str, Environment] = {}

    def splits(self, task: TaskSpec, config: TrialConfig) -> Any:
        from slmbench.tasks.splits import load_splits

        key = (config.task_path, config.data_dir, config.allow_outside_data_dir, config.profile)
        if key not in self._splits:
            data_dir = Path(config.data_dir) if config.data_dir else None
            self._splits[key] = load_splits(task, data_dir, config.profile, config.allow_outside_data_dir)
        return self._splits[key]

    def models(self, config: TrialConfig) -> SharedModels:
        """The shared models ``config`` names; every configuration shares this process's loaded copies."""
        key = config.models.model_dump_json()
        if key not in self._models:
            self._models[key] = SharedModels.from_config(config.models, self._loaded)
            self._models[key].progress = self.progress
        return self._models[key]

    def forget_vectors(self) -> None:
        """Drop every shared model's cached encodings (``slmbench predict``: one batch of texts after another)."""
        for models in self._models.values():
            models.forget_vectors()

    def environment(self, device: str) -> Environment:
        """This process's environment, with the GPU ``device`` names (collected once per device)."""
        if device not in self._environments:
            self._environments[device] = collect_environment(device)
        return self._environments[device]
