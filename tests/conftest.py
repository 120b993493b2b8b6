"""Shared test fixtures. Append new fixtures in their own clearly named section; never rewrite others'."""

from __future__ import annotations

import pytest

# --- tiny causal LM (scoring engine, prompting strategies) ------------------------------------


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer and chat template (no weights loaded)."""
    from transformers import AutoTokenizer

    from slmbench.lm.embedded import EMBEDDED, EMBEDDED_CAUSAL_LM

    return AutoTokenizer.from_pretrained(EMBEDDED[EMBEDDED_CAUSAL_LM].folder())


@pytest.fixture(scope="session")
def make_tiny_causal_lm(smollm2_tokenizer):
    """Factory of the kit's 2-layer Llama (``slmbench.testing.tiny_llama``) over the SmolLM2 vocabulary, fp32, eval mode."""
    from slmbench.testing import tiny_llama

    def make(attn_implementation: str = "sdpa"):
        return tiny_llama(smollm2_tokenizer, attn_implementation=attn_implementation)

    return make


@pytest.fixture(scope="session")
def tiny_causal_lm(make_tiny_causal_lm, smollm2_tokenizer):
    """(model, tokenizer) like ``SharedModels.causal_lm()``: a tiny random Llama with the SmolLM2 tokenizer."""
    return make_tiny_causal_lm(), smollm2_tokenizer


@pytest.fixture(scope="session")
def toy_task():
    """A three-label sentiment TaskSpec (no data file behind it) for prompt and strategy tests."""
    from pathlib import Path

    from slmbench.tasks.spec import DataSource, Label, TaskSpec

    return TaskSpec(
        name="toy-sentiment",
        description="toy",
        path=Path("toy.yaml"),
        source=DataSource(file="toy.csv"),
        text_column="text",
        label_column="label",
        labels=(Label("neg", "negative"), Label("neu", "neutral"), Label("pos", "positive")),
        instruction="Classify the sentiment of the sentence.",
    )


# --- the real data sets (../shared/data beside the checkout): only tests marked real_data --------

REAL_DATA_FILES = ("financial_phrasebank.csv", "bbc_news.csv")


def real_data_folder():
    """$SLMBENCH_DATA_DIR, else ../shared/data beside the checkout."""
    import os
    from pathlib import Path

    return Path(os.environ.get("SLMBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``real_data`` are skipped, saying so, when the real data folder is missing; nothing else skips for data."""
    folder = real_data_folder()
    missing = [name for name in REAL_DATA_FILES if not (folder / name).is_file()]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"real data folder missing: no {' or '.join(missing)} in {folder} (set SLMBENCH_DATA_DIR)")
    for item in items:
        if item.get_closest_marker("real_data"):
            item.add_marker(skip)


@pytest.fixture()
def shared_data_dir(request):
    """The folder holding bbc_news.csv and financial_phrasebank.csv, for tests marked ``real_data`` only."""
    if request.node.get_closest_marker("real_data") is None:
        pytest.fail("only a test marked @pytest.mark.real_data may read the real data; others use toy_task_file or toy_data_dir")
    return real_data_folder()


# --- toy data the runner, sweep, Ray, MLflow, guide and benchmark tests run on (no real data) ------

RUNNER_ROWS = {"negative": 25, "neutral": 40, "positive": 25}
"""Rows per label of ``toy_task_file``: split 50/25/25 they fill the smoke profile's caps (40 train, 15
validation, 15 test), and neutral is the majority label."""


@pytest.fixture()
def toy_task_file(tmp_path):
    """The kit's toy task (``toy-sentiment``) with ``RUNNER_ROWS``, written to tmp_path/task: its YAML path
    (the data file beside it; pass its folder as the data folder)."""
    from slmbench.testing import toy_task_files

    return toy_task_files(tmp_path / "task", per_label=RUNNER_ROWS)


@pytest.fixture()
def toy_data_dir(tmp_path):
    """A stand-in for ../shared/data, for commands and scripts that name the built-in financial_sentiment
    task: its financial_phrasebank.csv holds 150 toy rows (``slmbench.testing.toy_rows``), enough for the
    smoke profile's caps once that task splits them 70/10/20."""
    import csv

    from slmbench.testing import toy_rows

    folder = tmp_path / "toy-data"
    folder.mkdir()
    with open(folder / "financial_phrasebank.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(toy_rows(50))
    return folder


# --- the example plugins, pip-installed as a user would (examples/) ---------------------------


EXAMPLE_PLUGINS = {"slmbench-nearest-centroid": "nearest-centroid", "slmbench-instruction-ensemble": "instruction-ensemble"}
"""Example package -> the plugin (entry point) and strategy name it installs."""


@pytest.fixture(scope="session")
def example_sources(tmp_path_factory):
    """Copies of the example packages and of examples/broken-plugin (setuptools builds in the source
    tree and would leave build/ behind)."""
    import shutil
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    root = tmp_path_factory.mktemp("examples")
    for name in [*EXAMPLE_PLUGINS, "broken-plugin"]:
        shutil.copytree(examples / name, root / name, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return root


@pytest.fixture(scope="session")
def example_site(example_sources):
    """A folder with the example plugins and slmbench-broken-plugin installed by ``pip install --target``:
    put it on PYTHONPATH (or sys.path) to use them; the development environment is never modified."""
    import subprocess
    import sys

    target = example_sources / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target)]
    packages = [str(example_sources / name) for name in [*EXAMPLE_PLUGINS, "broken-plugin"]]
    result = subprocess.run([*command, *packages], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return target


# --- hostile-input tally (tests/cli_harness.py) -----------------------------------------------


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the hostile-input tests tried and how each ended (and write it to $SLMBENCH_FUZZ_TALLY)."""
    import os
    import sys

    harness = sys.modules.get("cli_harness")
    if harness is None or not harness.TALLY:
        return
    terminalreporter.write_line(harness.summary())
    if os.environ.get("SLMBENCH_FUZZ_TALLY"):
        harness.write_tally(os.environ["SLMBENCH_FUZZ_TALLY"])


# --- fake strategies (runner, sweeps, Ray, equal chance) ------------------------------------------


@pytest.fixture()
def registry():
    """The installed strategies plus the fake ones of ``tests/fake_strategies.py``."""
    import fake_strategies

    from slmbench.strategy.registry import load_registry

    return load_registry(extra_plugins={"fake-strategies": fake_strategies.plugin()})


@pytest.fixture()
def fit_log(tmp_path, monkeypatch):
    """A file each fake strategy's fit appends its name to: counts the trials that really ran."""
    log = tmp_path / "fits.log"
    monkeypatch.setenv("SLMBENCH_TEST_LOG", str(log))
    return lambda: log.read_text().split() if log.exists() else []


# --- every built-in strategy on the toy task (predict, export) ------------------------------------

BUILT_IN_STRATEGIES = [
    *("zero-shot", "few-shot", "rag", "knn-vote", "embedding-classifier", "lora", "dora", "qlora", "prompt-tuning"),
    *("adapters", "full-finetune", "encoder-finetune", "tfidf-linear", "ensemble"),
]


def run_toy_task(folder, run_id: str, strategies: str, *extra: str):
    """A real run on the toy task with the tiny models (smoke profile); its run folder."""
    from slmbench.cli.main import main
    from slmbench.testing import tiny_models
    from slmbench.testing.toys import toy_task_files

    causal_lm, embedder = tiny_models()
    task = toy_task_files(folder / "task")
    argv = ["run", "--task", str(task), "--strategies", strategies, "--profile", "smoke", "--model", str(causal_lm)]
    argv += ["--embedding-model", str(embedder), "--output", str(folder / "runs"), "--run-id", run_id, "--no-progress", *extra]
    assert main(argv) in (0, 1)
    return folder / "runs" / "toy-sentiment" / run_id


@pytest.fixture(scope="session")
def all_strategies_run(tmp_path_factory):
    """Every built-in strategy on the toy task, one seed, artifacts kept, every model's quantized copies checked
    (read it, never change it)."""
    return run_toy_task(tmp_path_factory.mktemp("all-strategies"), "all", "all", "--deployment-check", "all")
