"""The example plugins, pip-installed as a user would, drive the real CLI in a subprocess.

Both packages are installed with ``pip --target`` into a temporary folder put on PYTHONPATH, so the
development environment is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA_DIR = Path(os.environ.get("SLMBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
BROKEN = ("broken-import", "broken-hook")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with slmbench-tfidf-svm and slmbench-broken-plugin installed in it."""
    root = tmp_path_factory.mktemp("plugins")
    # Build from copies: setuptools builds in the source tree and would leave build/ behind.
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    sources = [shutil.copytree(EXAMPLES / name, root / name, ignore=ignore) for name in ("slmbench-tfidf-svm", "broken-plugin")]
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target)]
    result = subprocess.run([*command, *map(str, sources)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return target


def slmbench(site: Path, *args: str, only_plugins: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with the example plugins importable; a wide console so messages are not wrapped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])), "COLUMNS": "250"}
    env.pop("SLMBENCH_PLUGINS", None)
    if only_plugins:
        env["SLMBENCH_PLUGINS"] = only_plugins
    return subprocess.run([sys.executable, "-m", "slmbench.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def test_list_shows_the_plugin_and_warns_about_broken_ones_by_name(site):
    strategies = slmbench(site, "list", "strategies")

    assert strategies.returncode == 0, strategies.stderr
    assert "tfidf-svm" in strategies.stdout and "slmbench-tfidf-svm 0.1.0" in strategies.stdout
    assert "embedding-classifier" in strategies.stdout  # built-ins unaffected
    assert "warning: plugin broken-import was not loaded: RuntimeError:" in strategies.stderr
    assert "warning: plugin broken-hook was not loaded: PluginValidationError: unknown hook 'register_strategy'" in strategies.stderr

    plugins = slmbench(site, "list", "plugins")
    assert plugins.returncode == 0, plugins.stderr
    for name in BROKEN:
        assert any(name in line and "failed:" in line for line in plugins.stdout.splitlines()), plugins.stdout


@pytest.mark.parametrize("broken", BROKEN)
def test_strict_plugins_exits_non_zero_naming_the_broken_plugin(site, broken):
    result = slmbench(site, "--strict-plugins", "list", "strategies", only_plugins=f"tfidf-svm,{broken}")

    assert result.returncode != 0
    assert f"plugin '{broken}' failed" in result.stderr
    assert "tfidf-svm" not in result.stdout


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"shared data folder not found: {DATA_DIR} (set SLMBENCH_DATA_DIR)")
def test_run_with_the_plugin_works_beside_broken_plugins(site, tmp_path):
    from safetensors.numpy import load_file

    result = slmbench(
        site, "run", "--task", "financial_sentiment", "--strategies", "tfidf-svm", "--profile", "smoke",
        "--data-dir", str(DATA_DIR), "--output", str(tmp_path), "--run-id", "example", "--no-progress",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "plugin broken-import was not loaded" in result.stderr
    run_dir = tmp_path / "financial_sentiment" / "example"
    record = json.loads((run_dir / "trials" / "tfidf-svm.json").read_text())
    assert record["status"] == "ok", record["error"]
    assert record["family"] == "feature"
    assert record["details"]["C"] in (0.1, 1.0, 10.0)
    vocabulary = json.loads((run_dir / "artifacts" / "tfidf-svm" / "vocabulary.json").read_text())["terms"]
    weights = load_file(str(run_dir / "artifacts" / "tfidf-svm" / "weights.safetensors"))
    assert len(vocabulary) == record["details"]["vocabulary_size"]
    assert weights["coef"].shape == (3, len(vocabulary))  # one row per label of the task
    assert record["cost"]["trainable_params"] == record["cost"]["total_params"] == weights["coef"].size + 3
    assert (run_dir / "report.md").is_file()
