"""The conformance kit (``slmbench.testing``): it passes good strategies and fails broken ones with a
message that says what is wrong."""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from slmbench import Examples, Family, Options, Predictions, Search, SharedModel, Strategy, StrategyMetadata
from slmbench.strategy.registry import load_registry
from slmbench.testing import (
    StrategyCheckError,
    check_light_import,
    check_protocol,
    check_registration,
    check_reproducible,
    check_reusable,
    check_strategy,
    parametrize_with_checks,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path[:0] = [str(EXAMPLES / "slmbench-nearest-centroid"), str(EXAMPLES / "slmbench-instruction-ensemble")]
from slmbench_instruction_ensemble import InstructionEnsemble  # noqa: E402 - the example plugins, importable from their folders
from slmbench_nearest_centroid import NearestCentroid  # noqa: E402

BUILT_IN = [item.value for _, item in sorted(load_registry().strategies.items()) if item.value.__module__.startswith("slmbench_plugins.")]


def test_every_built_in_strategy_is_checked():
    assert len(BUILT_IN) == 14 and {strategy.name for strategy in BUILT_IN} >= {"zero-shot", "ensemble", "qlora", "dora"}


@parametrize_with_checks([*BUILT_IN, NearestCentroid, InstructionEnsemble])
def test_built_in_and_example_strategies_pass(strategy, check):
    check(strategy)


# --- deliberately broken strategies --------------------------------------------------------------


class MajorityLabel(Strategy):
    """A correct model-free strategy; each broken one below changes one thing."""

    metadata = StrategyMetadata(name="majority-label", description="the most frequent train label", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        self.label = max(set(train.labels), key=train.labels.count)

    def predict(self, texts):
        return Predictions(labels=[self.label] * len(texts))


class WrongLength(MajorityLabel):
    metadata = StrategyMetadata(name="wrong-length", description="the most frequent train label", family=Family.FEATURE)

    def predict(self, texts):
        return Predictions(labels=[self.label] * (len(texts) - 1))


class OutOfRange(MajorityLabel):
    metadata = StrategyMetadata(name="out-of-range", description="the most frequent train label", family=Family.FEATURE)

    def predict(self, texts):
        return Predictions(labels=[len(self.context.task.labels)] * len(texts))


class UnnormalisedProbabilities(MajorityLabel):
    metadata = StrategyMetadata(name="unnormalised-probabilities", description="the most frequent train label", family=Family.FEATURE)

    def predict(self, texts):
        import numpy as np

        return Predictions(labels=[self.label] * len(texts), probabilities=np.ones((len(texts), len(self.context.task.labels))))


class SetInDetails(MajorityLabel):
    metadata = StrategyMetadata(name="set-in-details", description="the most frequent train label", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        super().fit(train, validation)
        self.details = {"labels_seen": set(train.labels)}


class Unseeded(MajorityLabel):
    metadata = StrategyMetadata(name="unseeded", description="the most frequent train label", family=Family.FEATURE)

    def predict(self, texts):
        rng = random.Random()  # not seeded with context.seed
        return Predictions(labels=[rng.randrange(len(self.context.task.labels)) for _ in texts])


class PickledArtifact(MajorityLabel):
    metadata = StrategyMetadata(name="pickled-artifact", description="the most frequent train label", family=Family.FEATURE)

    def fit(self, train: Examples, validation: Examples) -> None:
        import pickle

        super().fit(train, validation)
        (self.context.artifact_dir / "model.pkl").write_bytes(pickle.dumps({"label": self.label}))


class SearchBeyondOptions(MajorityLabel):
    metadata = StrategyMetadata(name="search-beyond-options", description="the most frequent train label", family=Family.FEATURE)

    class Options(Options):
        smoothing: Annotated[float, Search.linear(0.0, 2.0)] = Field(0.5, gt=0, le=1)


class NoDescription(MajorityLabel):
    name = "no-description"
    description = ""


class DeclaresAnUncalledModel(MajorityLabel):
    metadata = StrategyMetadata(
        name="declares-an-uncalled-model", description="says it calls the embedder", family=Family.FEATURE, calls=(SharedModel.EMBEDDER,)
    )


class CallsAnUndeclaredModel(MajorityLabel):
    metadata = StrategyMetadata(name="calls-an-undeclared-model", description="encodes without saying so", family=Family.FEATURE)

    def predict(self, texts):
        self.context.models.encode(texts)
        return super().predict(texts)


class SavesWithoutLoad(MajorityLabel):
    metadata = StrategyMetadata(name="saves-without-load", description="the most frequent train label", family=Family.FEATURE)

    def save(self, directory):
        (directory / "label.json").write_text(json.dumps(self.label))


class LoadsSomethingElse(SavesWithoutLoad):
    metadata = StrategyMetadata(name="loads-something-else", description="the most frequent train label", family=Family.FEATURE)

    def load(self, directory):
        self.label = (json.loads((directory / "label.json").read_text()) + 1) % len(self.context.task.labels)


@pytest.mark.parametrize(
    ("strategy", "check", "message"),
    [
        (WrongLength, check_protocol, "strategy returned 14 predictions for 15 texts"),
        (OutOfRange, check_protocol, "label indices outside 0..2: [3, 3, 3"),
        (UnnormalisedProbabilities, check_protocol, "probabilities that are negative or whose rows do not sum to 1"),
        (SetInDetails, check_protocol, "details are not plain JSON: details holds a set"),
        (PickledArtifact, check_protocol, "artifacts saved as pickles: model.pkl"),
        (DeclaresAnUncalledModel, check_protocol, "metadata.calls names the shared embedder but fit and predict never call it"),
        (CallsAnUndeclaredModel, check_protocol, "it calls the shared embedder without naming it in metadata.calls"),
        (Unseeded, check_reproducible, "predictions differ at the same seed: seed every random choice with context.seed"),
        (SearchBeyondOptions, check_registration, "search over 'smoothing' (float 0..2)"),
        (NoDescription, check_registration, "does not set 'description'"),
        (SavesWithoutLoad, check_reusable, "it implements save without its counterpart: implement both save and load, or neither"),
        (LoadsSomethingElse, check_reusable, "reloaded by load, it predicts 15 of 15 test labels differently"),
    ],
    ids=lambda value: getattr(value, "name", None) or getattr(value, "__name__", "message"),
)
def test_broken_strategy_fails_naming_the_problem(strategy, check, message):
    with pytest.raises(StrategyCheckError) as failure:
        check(strategy)

    assert f"{check.__name__} failed for {strategy.__name__}" in str(failure.value)
    assert message in str(failure.value)


def test_a_search_space_beyond_the_options_says_which_value_is_refused():
    with pytest.raises(
        StrategyCheckError, match=r"the search would try 0.0, which the options refuse: option search-beyond-options.smoothing"
    ):
        check_registration(SearchBeyondOptions)


def test_heavy_import_at_module_level_fails_naming_the_library(tmp_path, monkeypatch):
    (tmp_path / "heavy_strategy.py").write_text(
        textwrap.dedent("""
        import sklearn  # at module level: every slmbench command would pay for it

        from slmbench import Examples, Family, Predictions, Strategy


        class HeavyImport(Strategy):
            name = "heavy-import"
            description = "imports scikit-learn at module level"
            family = Family.FEATURE

            def fit(self, train: Examples, validation: Examples) -> None:
                pass

            def predict(self, texts):
                return Predictions(labels=[0] * len(texts))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from heavy_strategy import HeavyImport

    with pytest.raises(StrategyCheckError, match=r"importing heavy_strategy loads \[.*'sklearn'\]: import them inside fit/predict"):
        check_light_import(HeavyImport)


def test_check_strategy_lists_every_failing_check():
    with pytest.raises(StrategyCheckError) as failure:
        check_strategy(WrongLength)

    failed = [line.split(" failed")[0] for line in str(failure.value).splitlines()]
    assert failed == ["check_protocol", "check_reproducible", "check_many_labels"]


def test_a_correct_strategy_passes_every_check():
    check_strategy(MajorityLabel)
