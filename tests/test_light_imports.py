"""Every slmbench command imports the core and every installed plugin: none of them may import a heavy
library at module level (heavy imports go inside the functions that need them)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import slmbench
import slmbench_plugins
from slmbench.testing import HEAVY_MODULES

TORCH_MODULES = {"slmbench.lm.bottleneck"}
"""Modules of torch code (``nn.Module`` subclasses), only ever imported inside a strategy's ``fit``."""
LIGHT = sorted(
    {m.name for m in pkgutil.walk_packages(slmbench.__path__, "slmbench.")} - TORCH_MODULES
    | {m.name for m in pkgutil.iter_modules(slmbench_plugins.__path__, "slmbench_plugins.")}
    | {"slmbench", "slmbench_tasks"}
)


@pytest.mark.parametrize("module", LIGHT)
def test_module_imports_no_heavy_library(module):
    code = f"import sys, {module}; print(sorted(set({HEAVY_MODULES!r} + ('yaml', 'datasets')) & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


def test_loading_every_plugin_imports_no_heavy_library():
    """What `slmbench list` does: load the registry from the entry points."""
    code = (
        "import sys; from slmbench.strategy.registry import load_registry; load_registry(); "
        f"print(sorted(set({HEAVY_MODULES!r}) & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
