"""The zero-shot strategy: registration, light import, predictions through the scoring engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from run_contexts import run_context

from slmbench.models import SharedModels
from slmbench.profiles import get_profile
from slmbench.prompts import build_messages
from slmbench.scoring import score_choices
from slmbench.strategy import Examples, Family
from slmbench_plugins import zero_shot
from slmbench_plugins.zero_shot import ZeroShot

TEXTS = ["Operating profit rose sharply.", "The company cut 200 jobs after losses.", "The meeting is on Tuesday."]


def make_strategy(toy_task, tiny_causal_lm, tmp_path: Path) -> ZeroShot:
    context = run_context(toy_task, SharedModels(_loaded={"causal_lm": tiny_causal_lm}), tmp_path)
    return ZeroShot(context)


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, slmbench_plugins.zero_shot; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_registers_the_strategy():
    registered = []
    zero_shot.register_strategies(registered.append)
    assert registered == [ZeroShot]
    assert ZeroShot.name == "zero-shot" and ZeroShot.family is Family.PROMPTING
    assert ZeroShot.uses_models == ("causal_lm",)


def test_predict_scores_the_verbalizers_of_the_plain_prompt(toy_task, tiny_causal_lm, tmp_path):
    strategy = make_strategy(toy_task, tiny_causal_lm, tmp_path)
    strategy.fit(Examples(TEXTS, [2, 0, 1]), Examples([], []))
    predictions = strategy.predict(TEXTS)

    model, tokenizer = tiny_causal_lm
    budget = get_profile("smoke")
    conversations = [
        build_messages(toy_task, t, tokenizer=tokenizer, max_input_tokens=budget.max_input_tokens) for t in TEXTS
    ]
    expected = score_choices(model, tokenizer, conversations, ["negative", "neutral", "positive"])
    assert predictions.labels == expected.labels
    np.testing.assert_allclose(predictions.probabilities, expected.probabilities)
    assert strategy.details["prompt_tokens_per_example"] == round(np.mean(expected.prompt_tokens), 1)
    assert strategy.details["shared_prefix_tokens"] == expected.shared_prefix_tokens
    assert strategy.details["compute_dtype"] == expected.compute_dtype
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing saved


def test_parameter_counts_are_the_frozen_lm(toy_task, tiny_causal_lm, tmp_path):
    strategy = make_strategy(toy_task, tiny_causal_lm, tmp_path)
    model, _ = tiny_causal_lm
    assert strategy.parameter_counts() == (0, sum(p.numel() for p in model.parameters()))
