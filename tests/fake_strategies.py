"""Model-free strategies for runner tests; each fit appends its name to $SLMBENCH_TEST_LOG.

Run as a script, it is the slmbench CLI with these strategies registered (for subprocess tests).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from typing import Annotated

from pydantic import Field

from slmbench import Examples, Family, Options, Predictions, Search, Strategy, StrategyMetadata, hookimpl


def _log(name: str) -> None:
    if log := os.environ.get("SLMBENCH_TEST_LOG"):
        with open(log, "a") as handle:
            handle.write(name + "\n")


def majority_label(labels: list[int]) -> int:
    """The most frequent label (the smallest of those tied)."""
    return max(sorted(set(labels)), key=labels.count)


class MajorityClass(Strategy):
    """Predicts the most frequent train label."""

    metadata = StrategyMetadata(name="majority", description="most frequent train label", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        self.label = majority_label(train.labels)
        (self.context.artifact_dir / "label.txt").write_text(str(self.label))

    def predict(self, texts):
        return Predictions(labels=[self.label] * len(texts))


class LastLabel(MajorityClass):
    """Predicts the label of the last train example: deterministic, different from majority."""

    metadata = StrategyMetadata(name="last-label", description="label of the last train example", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        self.label = train.labels[-1]


class Sleeper(MajorityClass):
    """Sleeps its option ``seconds`` (default $SLMBENCH_TEST_SLEEP_SECONDS, else 60) in fit, in short naps, logs that it
    woke, then acts like majority. (The option reaches Ray workers that an environment variable set later would not.)"""

    metadata = StrategyMetadata(name="sleeper", description="sleeps, then predicts the majority label", family=Family.FEATURE)

    class Options(Options):
        seconds: float | None = Field(None, ge=0, description="how long to sleep (default: $SLMBENCH_TEST_SLEEP_SECONDS, else 60)")

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        seconds = self.options.seconds if self.options.seconds is not None else float(os.environ.get("SLMBENCH_TEST_SLEEP_SECONDS", "60"))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        _log(f"{self.name}:woke")
        self.label = majority_label(train.labels)


class NodeSleeper(Sleeper):
    """A ``sleeper`` that first writes, in its artifact folder, which Ray node it runs on: ``second`` if the node
    offers the custom resource ``second``, else ``head`` (one file per attempt: ``ran-on.<pid>``)."""

    metadata = StrategyMetadata(name="node-sleeper", description="says its Ray node, then sleeps", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        import ray

        node = ray.get_runtime_context().get_node_id()
        resources = next(n["Resources"] for n in ray.nodes() if n["NodeID"] == node)
        (self.context.artifact_dir / f"ran-on.{os.getpid()}").write_text("second" if "second" in resources else "head")
        super().fit(train, validation)


class FirstLabel(MajorityClass):
    """Always predicts label 0 and ignores the train split, like zero-shot."""

    metadata = StrategyMetadata(name="first-label", description="always the first label", family=Family.FEATURE, reads_labels=False)

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        self.label = 0


class DiesOnce(MajorityClass):
    """Kills its own process in its first fit (a worker lost mid-trial), then behaves like majority."""

    metadata = StrategyMetadata(name="dies-once", description="kills its process once", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        marker = self.context.artifact_dir / "died-once"
        if not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        super().fit(train, validation)


class Tunable(MajorityClass):
    """Its option k is searchable: k >= 5 predicts the majority label (good), smaller k label 0. While it
    "trains" it reports a validation loss of 1/k, so a setting with a smaller k than an earlier one falls behind."""

    metadata = StrategyMetadata(name="tunable", description="majority label for k >= 5, label 0 below", family=Family.FEATURE)

    class Options(Options):
        k: Annotated[int, Search.integer(1, 9)] = Field(3, ge=1, le=9, description="the searched knob")

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(f"{self.name}:{self.options.k}")
        for step in (1, 2, 3):
            self.context.on_validation_loss(step, 1 / self.options.k)
        self.label = majority_label(train.labels) if self.options.k >= 5 else 0
        (self.context.artifact_dir / f"k{self.options.k}.txt").write_text(str(self.label))


class Exploding(MajorityClass):
    metadata = StrategyMetadata(name="exploding", description="raises while fitting", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        raise MemoryError("pretend the model did not fit")


class Interrupting(MajorityClass):
    """Presses Ctrl-C (sends itself SIGINT) while fitting, as a user stopping the run would."""

    metadata = StrategyMetadata(name="interrupting", description="sends its own process SIGINT in fit", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        import signal

        _log(self.name)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal arrives during this sleep
        _log(f"{self.name}:woke")


class Quantizable(MajorityClass):
    """Predicts its option ``label`` without reading a label (no labelled example needed), saves and loads it,
    and has one quantized copy (``int8``, the same predictions; its use is logged as ``quantizable:checked:<process id>``)."""

    metadata = StrategyMetadata(name="quantizable", description="a fixed label, with a quantized copy", family=Family.FEATURE)

    class Options(Options):
        label: int = Field(0, ge=0, description="the label it predicts")

    def fit(self, train: Examples, validation: Examples) -> None:
        _log(self.name)
        self.label = self.options.label
        self.labelled_examples = 0

    def save(self, directory) -> None:
        (directory / "label.txt").write_text(str(self.label))

    def load(self, directory) -> None:
        self.label = int((directory / "label.txt").read_text())

    def deployment_variants(self):
        return [QuantizedFake(self)]


class QuantizedFake:
    """``Quantizable``'s one copy: a context manager giving ``predict`` and ``size_bytes``."""

    quantization = "int8"

    def __init__(self, strategy: Quantizable) -> None:
        self.strategy = strategy

    def __enter__(self):
        _log(f"{self.strategy.name}:checked:{os.getpid()}")
        return types.SimpleNamespace(predict=self.strategy.predict, size_bytes=os.getpid())  # size: where it ran (tests)

    def __exit__(self, *exc: object) -> None:
        return None


class WrongLength(MajorityClass):
    metadata = StrategyMetadata(name="wrong-length", description="returns one prediction too few", family=Family.FEATURE)

    def predict(self, texts):
        return Predictions(labels=[0] * (len(texts) - 1))


def plugin() -> object:
    """A plugin module registering every fake strategy."""

    @hookimpl
    def register_strategies(register):
        fakes = (MajorityClass, LastLabel, FirstLabel, Sleeper, NodeSleeper, Exploding, Interrupting, WrongLength, DiesOnce, Tunable)
        for cls in (*fakes, Quantizable):
            register(cls)

    module = types.ModuleType("fake_strategies_plugin")
    module.register_strategies = register_strategies
    return module


if __name__ == "__main__":
    from slmbench.cli.main import main

    sys.exit(main(sys.argv[1:], extra_plugins={"fake-strategies": plugin()}))
