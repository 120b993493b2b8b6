"""The zero-shot strategy: predictions through the scoring engine, calibration, parameter counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slmbench.lm.prompts import build_messages
from slmbench.lm.scoring import score_choices
from slmbench.tasks.examples import Examples
from slmbench.tasks.profiles import get_profile
from slmbench.testing import make_context
from slmbench_plugins.zero_shot import ZeroShot

TEXTS = ["Operating profit rose sharply.", "The company cut 200 jobs after losses.", "The meeting is on Tuesday."]


def make_strategy(toy_task, tiny_causal_lm, tmp_path: Path, **options) -> ZeroShot:
    return ZeroShot(make_context(ZeroShot, tmp_path, task=toy_task, loaded={"causal_lm": tiny_causal_lm}, **options))


def test_predict_scores_the_verbalizers_of_the_plain_prompt(toy_task, tiny_causal_lm, tmp_path):
    strategy = make_strategy(toy_task, tiny_causal_lm, tmp_path, calibration="none")
    strategy.fit(Examples(TEXTS, [2, 0, 1]), Examples([], []))
    predictions = strategy.predict(TEXTS)

    model, tokenizer = tiny_causal_lm
    budget = get_profile("smoke")
    conversations = [build_messages(toy_task, t, tokenizer=tokenizer, max_input_tokens=budget.max_input_tokens) for t in TEXTS]
    expected = score_choices(model, tokenizer, conversations, ["negative", "neutral", "positive"])
    assert predictions.labels == expected.labels
    np.testing.assert_allclose(predictions.probabilities, expected.probabilities)
    assert strategy.prompt_tokens_per_example == round(np.mean(expected.prompt_tokens), 1)
    assert strategy.details["shared_prefix_tokens"] == expected.shared_prefix_tokens
    assert strategy.details["compute_dtype"] == expected.compute_dtype
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing saved


def test_batch_calibration_reads_texts_but_no_label(toy_task, tiny_causal_lm, tmp_path):
    """Zero-shot's bias comes from unlabelled train texts and no label prior is put in its place."""
    raw = make_strategy(toy_task, tiny_causal_lm, tmp_path / "raw", calibration="none")
    raw.fit(Examples(TEXTS, [2, 0, 1]), Examples([], []))
    uncalibrated = raw.predict(TEXTS).probabilities
    strategy = make_strategy(toy_task, tiny_causal_lm, tmp_path / "batch")
    strategy.fit(Examples(TEXTS, [0, 0, 0]), Examples([], []))  # labels ignored
    assert strategy.calibration.prior is None and strategy.labelled_examples == 0
    corrected = uncalibrated / uncalibrated.mean(axis=0)
    np.testing.assert_allclose(strategy.predict(TEXTS).probabilities, corrected / corrected.sum(axis=1, keepdims=True), rtol=1e-6)


def test_parameter_counts_are_the_frozen_lm(toy_task, tiny_causal_lm, tmp_path):
    """The tiny Llama, counted by hand from its dimensions: vocabulary 49,152 (SmolLM2's) x hidden 64, tied
    to the output; per layer q and o 64x64, k and v 64x32 (2 of 4 heads), gate, up and down 64x128, two
    norms of 64; a final norm of 64."""
    strategy = make_strategy(toy_task, tiny_causal_lm, tmp_path)
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64
    assert strategy.parameter_counts() == (0, 49_152 * 64 + 2 * per_layer + 64) == (0, 3_219_776)
