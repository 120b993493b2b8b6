"""Plugin loading: every strategy and task, built-in or third-party, arrives through entry points.

Entry points in the group ``slmbench`` name a module (or object) with hook implementations. A
plugin that fails to import, has a hook that matches no spec, or breaks while registering is
recorded by name with its error and left out; the rest keep working (``strict=True`` raises).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

from slmbench import hookspecs
from slmbench.strategy import Family, Strategy

ENTRY_POINT_GROUP = "slmbench"
ONLY_PLUGINS_ENV = "SLMBENCH_PLUGINS"
"""Comma-separated entry-point names: when set, only these plugins load."""


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


@dataclass
class Registry:
    strategies: dict[str, Registered] = field(default_factory=dict)
    tasks: dict[str, Registered] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)
    """plugin name -> distribution (name and version) it came from."""
    failures: list[PluginFailure] = field(default_factory=list)

    def strategy(self, name: str) -> type[Strategy]:
        if name not in self.strategies:
            raise UnknownName(_unknown("strategy", name, self.strategies))
        return self.strategies[name].value

    def task_path(self, name: str) -> Path:
        if name not in self.tasks:
            raise UnknownName(_unknown("task", name, self.tasks))
        return Path(self.tasks[name].value)


def _unknown(kind: str, name: str, known: dict) -> str:
    from slmbench.tasks import did_you_mean

    hint = did_you_mean(name, list(known))
    return f"unknown {kind} {name!r}{hint} (registered: {', '.join(sorted(known)) or 'none'})"


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _check_strategy(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a subclass of slmbench.Strategy")
    for attribute in ("name", "description", "family"):
        if not getattr(cls, attribute, None):
            raise TypeError(f"strategy class {cls.__name__} does not set {attribute!r}")
    Family(cls.family)


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
        """Register a plugin object; unknown hook names make it fail (pluggy's check_pending)."""
        try:
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
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            register = register_factory(impl.plugin_name)
            try:
                impl.function(*[register for _ in impl.argnames])
            except Exception as error:  # noqa: BLE001
                self.fail(impl.plugin_name, error)

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
        from slmbench.tasks import load_task

        self._call_each(
            "register_strategies",
            self._registrar(self.registry.strategies, "strategy", lambda cls: cls.name, _check_strategy),
        )
        self._call_each(
            "register_tasks",
            self._registrar(self.registry.tasks, "task", lambda path: load_task(path).name, lambda path: None),
        )
        self._drop_failed_plugins()
        return self.registry

    def _drop_failed_plugins(self) -> None:
        """A plugin that failed part-way is left out whole: nothing it registered stays."""
        failed = {failure.plugin for failure in self.registry.failures}
        for table in (self.registry.strategies, self.registry.tasks):
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
