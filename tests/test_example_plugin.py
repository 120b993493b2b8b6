"""The example plugins, pip-installed as a user would, drive the real CLI in a subprocess, and their own
tests (which use ``slmbench.testing``) pass against the installed copies.

The packages are installed with ``pip --target`` into a temporary folder put on PYTHONPATH (the
``example_site`` fixture), so the development environment is never modified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_PLUGINS

BROKEN = ("broken-import", "broken-hook")


def environment(site: Path, only_plugins: str | None = None) -> dict[str, str]:
    """The environment with the installed examples importable; a wide console so messages are not wrapped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])), "COLUMNS": "250"}
    env.pop("SLMBENCH_PLUGINS", None)
    if only_plugins:
        env["SLMBENCH_PLUGINS"] = only_plugins
    return env


def slmbench(site: Path, *args: str, only_plugins: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slmbench.cli.main", *args], env=environment(site, only_plugins), capture_output=True, text=True, timeout=600
    )


def test_list_shows_the_plugins_and_warns_about_broken_ones_by_name(example_site):
    strategies = slmbench(example_site, "list", "strategies", "--format", "text")

    assert strategies.returncode == 0, strategies.stderr
    assert "nearest-centroid\tfeature\tslmbench-nearest-centroid 0.1.0" in strategies.stdout
    assert "instruction-ensemble\tprompting\tslmbench-instruction-ensemble 0.1.0" in strategies.stdout
    assert "tfidf-linear" in strategies.stdout  # built-ins unaffected
    assert "warning: plugin broken-import was not loaded: RuntimeError:" in strategies.stderr
    assert "warning: plugin broken-hook was not loaded: PluginValidationError: unknown hook 'register_strategy'" in strategies.stderr

    plugins = slmbench(example_site, "list", "plugins", "--format", "text")
    assert plugins.returncode == 0, plugins.stderr
    for name in BROKEN:
        assert any(name in line and "failed:" in line for line in plugins.stdout.splitlines()), plugins.stdout


def test_show_lists_the_plugin_s_typed_options(example_site):
    result = slmbench(example_site, "show", "nearest-centroid")

    assert result.returncode == 0, result.stderr
    assert "shared models: embedder" in result.stdout
    assert "prototypes (int, default 1; allowed: ≥ 1, ≤ 32; searched on validation: int 1..8): prototypes per label" in result.stdout


@pytest.mark.parametrize("broken", BROKEN)
def test_strict_plugins_exits_non_zero_naming_the_broken_plugin(example_site, broken):
    result = slmbench(example_site, "--strict-plugins", "list", "strategies", only_plugins=f"nearest-centroid,{broken}")

    assert result.returncode != 0
    assert f"plugin '{broken}' failed" in result.stderr
    assert "nearest-centroid" not in result.stdout


@pytest.mark.parametrize("package", EXAMPLE_PLUGINS)
def test_the_example_s_own_tests_pass_against_the_installed_copy(example_site, example_sources, package):
    """What a plugin author runs: the package's tests, which check the strategy with ``slmbench.testing``."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example_sources / package / "tests")],
        env=environment(example_site),
        cwd=example_sources / package,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]


@pytest.mark.real_data
def test_run_with_the_plugins_works_beside_broken_plugins(example_site, shared_data_dir, tmp_path):
    from safetensors.numpy import load_file

    from slmbench.testing import tiny_models

    causal_lm, embedder = tiny_models()
    result = slmbench(
        example_site, "run", "--task", "financial_sentiment", "--strategies", ",".join(EXAMPLE_PLUGINS.values()), "--profile", "smoke",
        "--set", "nearest-centroid.prototypes=2", "--model", str(causal_lm), "--embedding-model", str(embedder),
        "--data-dir", str(shared_data_dir), "--output", str(tmp_path), "--run-id", "example", "--no-progress",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "plugin broken-import was not loaded" in result.stderr
    run_dir = tmp_path / "financial_sentiment" / "example"
    centroid = json.loads((run_dir / "trials" / "nearest-centroid.seed0.json").read_text())
    assert centroid["status"] == "ok", centroid["error"]
    assert centroid["family"] == "feature" and centroid["options"] == {"prototypes": 2, "temperature": 0.05}
    prototypes = load_file(str(run_dir / "artifacts" / "nearest-centroid.seed0" / "prototypes.safetensors"))
    assert prototypes["vectors"].shape[0] == 6  # two per label
    assert centroid["cost"]["trainable_params"] == prototypes["vectors"].size
    ensemble = json.loads((run_dir / "trials" / "instruction-ensemble.seed0.json").read_text())
    assert ensemble["status"] == "ok", ensemble["error"]
    assert ensemble["labelled_examples"] == 0 and ensemble["learns_from_train"] is False
    assert ensemble["prompt_tokens_per_example"] > 0 and len(ensemble["details"]["per_instruction"]) == 3
    assert (run_dir / "report.md").is_file()
