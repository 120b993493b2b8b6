"""Shared test fixtures. Append new fixtures in their own clearly named section; never rewrite others'."""

from __future__ import annotations

import pytest

# --- tiny causal LM (scoring engine, prompting strategies) ------------------------------------


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer and chat template (no weights loaded)."""
    from transformers import AutoTokenizer

    from slmbench.lm.models import smollm2_dir

    return AutoTokenizer.from_pretrained(smollm2_dir())


@pytest.fixture(scope="session")
def make_tiny_causal_lm(smollm2_tokenizer):
    """Factory of 2-layer Llamas with random (but peaked) weights over the SmolLM2 vocabulary, fp32, eval mode."""

    def make(attn_implementation: str = "sdpa"):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(smollm2_tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            initializer_range=0.2,
            tie_word_embeddings=True,
            pad_token_id=smollm2_tokenizer.pad_token_id,
            attn_implementation=attn_implementation,
        )
        return LlamaForCausalLM(config).eval()

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


# --- the shared data sets (../shared/data beside the checkout) -------------------------------


@pytest.fixture(scope="session")
def shared_data_dir():
    """The folder holding bbc_news.csv and financial_phrasebank.csv ($SLMBENCH_DATA_DIR or ../shared/data)."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("SLMBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data").resolve()
    if not (folder / "financial_phrasebank.csv").exists():
        pytest.skip(f"shared data not found in {folder}; set SLMBENCH_DATA_DIR")
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
