"""The layers of docs/architecture.md, as import-linter contracts (pyproject.toml): they hold on the
tree, and an import that crosses them, or closes a cycle, fails them with the import named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``tree`` (it imports them from the working folder)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The package, the built-in strategies and the contracts, laid out as import-linter reads them."""
    shutil.copytree(ROOT / "slmbench", tmp_path / "slmbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "plugins", tmp_path / "slmbench_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract(tree_copy: Path) -> None:
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_fails_naming_the_import(tree_copy: Path) -> None:
    add_line(tree_copy / "slmbench" / "report" / "markdown.py", "from slmbench.engine import runner")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "slmbench's layers: each imports only those below it BROKEN" in result.stdout
    assert "The report reads records only: no task loading, model, strategy or engine BROKEN" in result.stdout
    assert "slmbench.report.markdown -> slmbench.engine.runner" in result.stdout


def test_lazy_imports_that_close_a_cycle_fail_naming_them(tree_copy: Path) -> None:
    lm = tree_copy / "slmbench" / "lm"
    add_line(lm / "memory.py", "def _late() -> None:\n    from slmbench.lm import hardware  # noqa: F401")
    add_line(lm / "hardware.py", "def _late() -> None:\n    from slmbench.lm import memory  # noqa: F401")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "No import cycles between the modules of any package, lazy imports included BROKEN" in result.stdout
    assert ".memory -> .hardware" in result.stdout or ".hardware -> .memory" in result.stdout


def test_a_builtin_strategy_reaching_into_the_engine_fails(tree_copy: Path) -> None:
    add_line(tree_copy / "slmbench_plugins" / "knn_vote.py", "from slmbench.engine import trial")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "Built-in strategies use the plugin API, never the engine or the command line BROKEN" in result.stdout
    assert "slmbench_plugins.knn_vote -> slmbench.engine.trial" in result.stdout


def test_every_subpackage_is_in_the_distribution() -> None:
    """setuptools installs only the packages pyproject.toml lists: a subpackage missing there is missing
    from every non-editable install (a wheel, a Ray node)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "slmbench").rglob("__init__.py")}
    assert on_disk - listed == set(), f"pyproject.toml's [tool.setuptools] packages misses {sorted(on_disk - listed)}"


def test_the_plugin_api_is_where_the_guide_says() -> None:
    """What docs/writing-a-strategy.md tells plugin authors to import, from where it tells them."""
    import slmbench
    import slmbench.strategy
    import slmbench.testing
    from slmbench.common.options import Options
    from slmbench.lm.finetuning.setup import TrainingSetup
    from slmbench.strategy.base import Strategy
    from slmbench.strategy.registry import load_registry
    from slmbench.tasks.examples import Examples, Predictions

    assert (slmbench.Strategy, slmbench.Options, slmbench.Examples, slmbench.Predictions) == (Strategy, Options, Examples, Predictions)
    assert (slmbench.strategy.Strategy, slmbench.strategy.Examples, slmbench.strategy.Options) == (Strategy, Examples, Options)
    lazy = ("classify_with_lm", "estimate_calibration", "PromptOptions", "FineTunedCausalLM", "FineTuneOptions", "TrainIndex")
    assert all(callable(getattr(slmbench, name)) for name in (*lazy, "param_count", "hookimpl"))
    assert issubclass(slmbench.OptionError, ValueError)
    assert callable(load_registry) and callable(TrainingSetup.from_budget)
    assert callable(slmbench.testing.parametrize_with_checks) and callable(slmbench.testing.make_context)
