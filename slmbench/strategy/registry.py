"""Plugin loading: every strategy and task, built-in or third-party, arrives through entry points.

Entry points in the group ``slmbench`` name a module (or object) with hook implementations. A
plugin that fails to import, has a hook that matches no spec, or breaks while registering is
recorded by name with its error and left out; the rest keep working (``strict=True`` raises).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from slmbench.strategy import hookspecs
from slmbench.strategy.base import Strategy
from slmbench.strategy.metadata import NAME_PATTERN, StrategyMetadata

ENTRY_POINT_GROUP = "slmbench"
ONLY_PLUGINS_ENV = "SLMBENCH_PLUGINS"
"""Comma-separated entry-point names: when set, only these plugins load."""
TRACKER_NAME = re.compile(NAME_PATTERN)
"""What a tracker may be called (as a strategy: it appears on command lines)."""


class PluginError(RuntimeError):
    """A plugin failed and the caller asked for strictness."""


class UnknownName(KeyError):
    """No strategy or task is registered under that name; the message lists close matches."""


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    error: str


@dataclass(frozen=True)
class Registered:
    """Something a plugin registered, with the plugin and distribution it came from."""

    name: str
    value: Any
    plugin: str
    distribution: str


@dataclass(frozen=True)
class Tracker:
    """An experiment tracker a plugin registered (``register_trackers``)."""

    description: str
    check: Callable[[], None] | None = None
    """Called before a run that tracks with it; raises saying what is missing (a library, a store)."""


@dataclass
class Registry:
    strategies: dict[str, Registered] = field(default_factory=dict)
    tasks: dict[str, Registered] = field(default_factory=dict)
    trackers: dict[str, Registered] = field(default_factory=dict)
    """tracker name -> its ``Tracker`` (``value``), for ``--track``."""
    plugins: dict[str, str] = field(default_factory=dict)
    """plugin name -> distribution (name and version) it came from."""
    failures: list[PluginFailure] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None
    """The plugin manager, to call the tracking hooks (``trial_finished``, ``run_finished``)."""

    def strategy(self, name: str) -> type[Strategy]:
        if name not in self.strategies:
            raise UnknownName(_unknown("strategy", name, self.strategies))
        return self.strategies[name].value

    def code_version(self, name: str) -> str:
        """The strategy's distribution and a hash of its source (see ``code_version``)."""
        return code_version(self.strategy(name), self.strategies[name].distribution)

    def task_path(self, name: str) -> Path:
        if name not in self.tasks:
            raise UnknownName(_unknown("task", name, self.tasks))
        return Path(self.tasks[name].value)


def _unknown(kind: str, name: str, known: dict) -> str:
    from slmbench.common.text import did_you_mean

    hint = did_you_mean(name, list(known))
    return f"unknown {kind} {name!r}{hint} (registered: {', '.join(sorted(known)) or 'none'})"


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def code_version(cls: type, distribution: str) -> str:
    """``distribution`` plus a hash of the source files of ``cls`` and its base classes, and of the
    modules those files name in ``CODE_VERSION_INCLUDES`` (``slmbench.strategy.finetuned_lm``: the training code).

    Editing a strategy (or the slmbench base it builds on) in an editable install changes it, so a
    resumed run reruns that strategy's trials. Helpers the strategy only calls are not covered.
    """
    digest = hashlib.sha256()
    module_names = dict.fromkeys(klass.__module__ for klass in cls.__mro__)
    for module_name in list(module_names):
        module_names.update(dict.fromkeys(getattr(sys.modules.get(module_name), "CODE_VERSION_INCLUDES", ())))
    for module_name in module_names:
        if module_name.split(".")[0] in sys.stdlib_module_names:
            continue
        file = getattr(sys.modules.get(module_name), "__file__", None)
        if file and file.endswith(".py") and os.path.isfile(file):
            digest.update(Path(file).read_bytes())
    return f"{distribution or 'unregistered'}+{digest.hexdigest()[:12]}"


def hook_callers(manager: pluggy.PluginManager, hook_name: str) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(plugin name, a caller of the hook for that plugin alone) for each plugin implementing it: pluggy's
    calling convention, one plugin at a time, so that a failure is that plugin's alone."""
    implementations = getattr(manager.hook, hook_name).get_hookimpls()
    for impl in implementations:
        others = [other.plugin for other in implementations if other.plugin is not impl.plugin]
        yield impl.plugin_name, manager.subset_hook_caller(hook_name, others)


def _check_strategy(cls: Any) -> None:
    """A TypeError saying what is wrong unless ``cls`` is a Strategy with valid metadata, options and search space."""
    from slmbench.common.options import Options
    from slmbench.strategy.search_space import check_space

    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a subclass of slmbench.Strategy")
    if cls.metadata_error:
        raise TypeError(cls.metadata_error)
    if not isinstance(getattr(cls, "metadata", None), StrategyMetadata):
        raise TypeError(
            f"strategy class {cls.__name__} does not declare metadata = StrategyMetadata(name=..., description=..., family=...)"
        )
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, Options)):
        raise TypeError(f"{cls.__name__}.Options is not a subclass of slmbench.Options")
    cls.Options()  # every default must be valid
    check_space(cls)


class PluginLoader:
    """Builds a Registry from entry points and from plugin objects registered directly (tests)."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.registry = Registry()
        self._distributions: dict[str, str] = {}

    def fail(self, plugin: str, error: BaseException) -> None:
        if self.strict:
            raise PluginError(f"plugin {plugin!r} failed: {_describe_error(error)}") from error
        self.registry.failures.append(PluginFailure(plugin, _describe_error(error)))

    def add(self, plugin: object, name: str, distribution: str = "") -> None:
        """Register a plugin (a module, or any hashable object); unknown hook names make it fail (pluggy's check_pending)."""
        try:
            hash(plugin)  # pluggy calls hooks plugin by plugin through sets of plugins
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except Exception as error:  # noqa: BLE001 - any plugin bug is reported, not raised
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            self.fail(name, error)
            return
        self._distributions[name] = distribution
        self.registry.plugins[name] = distribution

    def add_entry_points(self) -> None:
        only = {n.strip() for n in os.environ.get(ONLY_PLUGINS_ENV, "").split(",") if n.strip()}
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for missing in sorted(only - set(entry_points.names)):
            self.fail(missing, LookupError(f"named in ${ONLY_PLUGINS_ENV} but no installed plugin has this name"))
        for entry_point in entry_points:
            if only and entry_point.name not in only:
                continue
            dist = entry_point.dist
            distribution = f"{dist.name} {dist.version}" if dist else ""
            try:
                plugin = entry_point.load()
            except Exception as error:  # noqa: BLE001 - a broken plugin must not stop the CLI
                self.fail(entry_point.name, error)
                continue
            self.add(plugin, entry_point.name, distribution)

    def _call_each(self, hook_name: str, register_factory: Callable[[str], Callable[[Any], None]]) -> None:
        for plugin, call in hook_callers(self.manager, hook_name):
            try:
                call(register=register_factory(plugin))
            except Exception as error:  # noqa: BLE001
                self.fail(plugin, error)

    def _registrar(self, table: dict[str, Registered], kind: str, name_of: Callable[[Any], str], check: Callable[[Any], None]):
        def factory(plugin: str) -> Callable[[Any], None]:
            def register(value: Any) -> None:
                check(value)
                name = name_of(value)
                if name in table:
                    raise ValueError(f"{kind} {name!r} is already registered by plugin {table[name].plugin!r}")
                table[name] = Registered(name, value, plugin, self._distributions.get(plugin, ""))

            return register

        return factory

    def build(self) -> Registry:
        """Call the registration hooks of every loaded plugin and return the registry."""
        from slmbench.tasks.spec import load_task

        self._call_each(
            "register_strategies",
            self._registrar(self.registry.strategies, "strategy", lambda cls: cls.name, _check_strategy),
        )
        self._call_each(
            "register_tasks",
            self._registrar(self.registry.tasks, "task", lambda path: load_task(path).name, lambda path: None),
        )
        self._call_each("register_trackers", self._tracker_registrar)
        self._drop_failed_plugins()
        for plugin in {failure.plugin for failure in self.registry.failures}:
            if (registered := self.manager.get_plugin(plugin)) is not None:
                self.manager.unregister(registered)  # its tracking hooks must not run either
        self.registry.manager = self.manager
        return self.registry

    def _tracker_registrar(self, plugin: str) -> Callable[..., None]:
        def register(name: str, description: str = "", check: Callable[[], None] | None = None) -> None:
            if not isinstance(name, str) or not TRACKER_NAME.fullmatch(name):
                raise ValueError(f"tracker name {name!r}: use 1-64 letters, digits, '-' or '_'")
            if name in self.registry.trackers:
                raise ValueError(f"tracker {name!r} is already registered by plugin {self.registry.trackers[name].plugin!r}")
            if check is not None and not callable(check):
                raise TypeError(f"tracker {name!r}: check must be callable, got {type(check).__name__}")
            self.registry.trackers[name] = Registered(name, Tracker(description, check), plugin, self._distributions.get(plugin, ""))

        return register

    def _drop_failed_plugins(self) -> None:
        """A plugin that failed part-way is left out whole: nothing it registered stays."""
        failed = {failure.plugin for failure in self.registry.failures}
        for table in (self.registry.strategies, self.registry.tasks, self.registry.trackers):
            for name in [name for name, item in table.items() if item.plugin in failed]:
                del table[name]
        for plugin in failed:
            self.registry.plugins.pop(plugin, None)


def load_registry(strict: bool = False, extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load every installed plugin (and ``extra_plugins``, name -> object) into a Registry."""
    loader = PluginLoader(strict=strict)
    loader.add_entry_points()
    for name, plugin in (extra_plugins or {}).items():
        loader.add(plugin, name)
    return loader.build()
