"""A plugin module that raises while being imported."""

raise RuntimeError("slmbench-broken-plugin fails at import on purpose")
