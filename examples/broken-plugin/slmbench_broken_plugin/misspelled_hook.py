"""A plugin whose hook name matches no spec: ``register_strategy`` instead of ``register_strategies``."""

from slmbench import hookimpl


@hookimpl
def register_strategy(register):
    raise AssertionError("never called: slmbench rejects the plugin before calling any hook")
