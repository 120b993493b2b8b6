"""Plugin loading: each plugin failure is reported by the plugin's name and leaves the rest working."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from slmbench import Examples, Family, Options, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl
from slmbench.strategy.registry import PluginError, load_registry
from slmbench.strategy.search_space import search_space


class Dummy(Strategy):
    metadata = StrategyMetadata(name="dummy", description="Always predicts the first label", family=Family.PROMPTING)

    def fit(self, train: Examples, validation: Examples) -> None:
        pass

    def predict(self, texts):
        return Predictions(labels=[0] * len(texts))


class DummyTwin(Dummy):
    """Another class under the same strategy name."""


class NotAStrategy:
    metadata = StrategyMetadata(name="not-a-strategy", description="Has the metadata but not the base class", family=Family.FEATURE)


class NoDescription(Dummy):
    name = "no-description"
    description = ""


class UnknownFamily(Dummy):
    name = "unknown-family"
    family = "magic"


def registering(*classes: type) -> object:
    """A plugin object whose register_strategies hook registers ``classes``."""

    class Plugin:
        @hookimpl
        def register_strategies(self, register):
            for cls in classes:
                register(cls)

    return Plugin()


class MisspelledHook:
    @hookimpl
    def register_strategies(self, register):
        register(Dummy)

    @hookimpl
    def register_strategy(self, register):  # no such hook spec
        register(Dummy)


class Raises:
    @hookimpl
    def register_strategies(self, register):
        raise RuntimeError("boom")


@pytest.fixture
def no_entry_points(monkeypatch):
    """Only plugins passed as ``extra_plugins`` load: no installed entry point is seen."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: importlib.metadata.EntryPoints(()))


def failures_by_plugin(registry) -> dict[str, str]:
    return {failure.plugin: failure.error for failure in registry.failures}


def test_extra_plugin_registers_its_strategy_with_its_origin(no_entry_points):
    registry = load_registry(extra_plugins={"my-plugin": registering(Dummy)})

    assert registry.failures == []
    assert registry.strategy("dummy") is Dummy
    assert registry.strategies["dummy"].plugin == "my-plugin"
    assert registry.plugins == {"my-plugin": ""}  # registered directly: no distribution


def test_unknown_hook_name_is_reported_by_plugin_name_and_the_plugin_left_out(no_entry_points):
    registry = load_registry(extra_plugins={"typo": MisspelledHook(), "good": registering(DummyTwin)})

    failures = failures_by_plugin(registry)
    assert list(failures) == ["typo"]
    assert "PluginValidationError" in failures["typo"] and "register_strategy" in failures["typo"]
    assert "typo" not in registry.plugins
    assert registry.strategy("dummy") is DummyTwin  # the misspelled plugin's valid hook never ran


def test_register_hook_that_raises_is_reported_and_others_still_load(no_entry_points):
    registry = load_registry(extra_plugins={"raiser": Raises(), "good": registering(Dummy)})

    assert failures_by_plugin(registry) == {"raiser": "RuntimeError: boom"}
    assert registry.strategies["dummy"].plugin == "good"


def test_plugin_failing_part_way_is_left_out_whole(no_entry_points):
    class RegistersThenRaises:
        @hookimpl
        def register_strategies(self, register):
            register(Dummy)
            raise RuntimeError("after the first strategy")

    registry = load_registry(extra_plugins={"half": RegistersThenRaises()})

    assert "after the first strategy" in failures_by_plugin(registry)["half"]
    assert "dummy" not in registry.strategies and "half" not in registry.plugins


def test_duplicate_strategy_name_is_reported(no_entry_points):
    registry = load_registry(extra_plugins={"first": registering(Dummy), "second": registering(DummyTwin)})

    winner = registry.strategies["dummy"].plugin
    loser = ({"first", "second"} - {winner}).pop()
    failures = failures_by_plugin(registry)
    assert list(failures) == [loser]
    assert f"strategy 'dummy' is already registered by plugin '{winner}'" in failures[loser]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (NotAStrategy, "is not a subclass of slmbench.Strategy"),
        (NoDescription, "does not set 'description'"),
        (UnknownFamily, "family: Input should be 'prompting', 'retrieval'"),
    ],
)
def test_invalid_strategy_class_is_rejected(no_entry_points, cls, message):
    registry = load_registry(extra_plugins={"bad": registering(cls)})

    assert message in failures_by_plugin(registry)["bad"]
    assert cls.__name__ not in registry.strategies and len(registry.strategies) == 0


def test_a_misspelt_shared_model_fails_at_registration_naming_it(no_entry_points):
    class Defines:
        @hookimpl
        def register_strategies(self, register):
            class Misspelt(Dummy):
                metadata = StrategyMetadata(
                    name="misspelt", description="calls a model that does not exist", family="feature", calls=("causal-lm",)
                )

            register(Misspelt)

    registry = load_registry(extra_plugins={"typo": Defines()})

    error = failures_by_plugin(registry)["typo"]
    assert "calls.0" in error and "'causal-lm'" in error and "'causal_lm' or 'embedder'" in error
    assert "misspelt" not in registry.strategies


def test_a_misspelt_shared_model_in_the_old_class_attributes_fails_at_registration_naming_it(no_entry_points):
    with pytest.warns(DeprecationWarning, match="uses_models"):

        class OldStyle(Dummy):
            name = "old-style"
            uses_models = ("embeder",)

    registry = load_registry(extra_plugins={"old": registering(OldStyle)})

    assert (
        "strategy class OldStyle: uses_models: Input should be 'causal_lm' or 'embedder' (got 'embeder')"
        in failures_by_plugin(registry)["old"]
    )


def test_old_class_attributes_still_register_as_metadata_with_a_deprecation_warning(no_entry_points):
    with pytest.warns(DeprecationWarning, match="declare metadata = StrategyMetadata"):

        class OldStyle(Strategy):
            name = "old-style"
            description = "0.2-style attributes"
            family = Family.PROMPTING
            uses_models = ("causal_lm",)
            learns_from_train = False
            tune = {"k": ("int", 1, 4)}

            class Options(Options):
                k: int = Field(2, ge=1, le=8)

            def fit(self, train, validation):
                pass

            def predict(self, texts):
                return Predictions(labels=[0] * len(texts))

    with pytest.warns(DeprecationWarning, match="OldStyle.tune is deprecated"):
        registry = load_registry(extra_plugins={"old": registering(OldStyle)})

    assert registry.strategy("old-style") is OldStyle
    assert search_space(OldStyle) == {"k": Search.integer(1, 4)}
    assert OldStyle.metadata == StrategyMetadata(
        name="old-style",
        description="0.2-style attributes",
        family=Family.PROMPTING,
        calls=(SharedModel.CAUSAL_LM,),
        depends_on=(SharedModel.CAUSAL_LM,),
        reads_labels=False,
    )


def test_strict_mode_raises_plugin_error_naming_the_plugin(no_entry_points):
    with pytest.raises(PluginError, match=r"plugin 'raiser' failed: RuntimeError: boom"):
        load_registry(strict=True, extra_plugins={"raiser": Raises()})
    with pytest.raises(PluginError, match=r"plugin 'typo' failed: PluginValidationError"):
        load_registry(strict=True, extra_plugins={"typo": MisspelledHook()})


def test_slmbench_plugins_restricts_entry_points(monkeypatch):
    monkeypatch.delenv("SLMBENCH_PLUGINS", raising=False)
    everything = load_registry()
    assert {"embedding-classifier", "builtin-tasks"} <= set(everything.plugins)

    monkeypatch.setenv("SLMBENCH_PLUGINS", " embedding-classifier , builtin-tasks ")
    registry = load_registry()

    assert set(registry.plugins) == {"embedding-classifier", "builtin-tasks"}
    assert set(registry.strategies) == {"embedding-classifier"}
    assert registry.strategies["embedding-classifier"].distribution.startswith("slmbench ")
    assert {"financial_sentiment", "bbc"} <= set(registry.tasks)

    monkeypatch.setenv("SLMBENCH_PLUGINS", "builtin-tasks,embeding-classifier")
    assert "no installed plugin has this name" in failures_by_plugin(load_registry())["embeding-classifier"]


def test_code_version_of_a_fine_tuning_strategy_covers_the_training_code(monkeypatch):
    import slmbench.strategy.finetuned_lm

    registry = load_registry()
    with_training = registry.code_version("lora")
    monkeypatch.setattr(slmbench.strategy.finetuned_lm, "CODE_VERSION_INCLUDES", ())
    assert registry.code_version("lora") != with_training


def test_help_exits_zero():
    result = subprocess.run([Path(sys.executable).with_name("slmbench"), "--help"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "usage: slmbench" in result.stdout


def test_none_on_the_command_line_is_a_choice_named_none_or_none_itself():
    from slmbench.common.options import OptionError, build_options, group_assignments

    registry = load_registry()
    values = group_assignments(["few-shot.calibration=none", "few-shot.max_prompt_tokens=None", "few-shot.shots_per_class=3"])
    options = build_options("few-shot", registry.strategy("few-shot").Options, values["few-shot"])
    assert (options.calibration, options.max_prompt_tokens, options.shots_per_class) == ("none", None, 3)
    with pytest.raises(OptionError, match="shots_per_class"):  # an int option that allows no None
        build_options("few-shot", registry.strategy("few-shot").Options, group_assignments(["few-shot.shots_per_class=none"])["few-shot"])
