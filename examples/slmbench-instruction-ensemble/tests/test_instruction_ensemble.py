"""instruction-ensemble against slmbench's conformance kit, then its own behaviour on the kit's toy task."""

from __future__ import annotations

import json

import numpy as np
from slmbench_instruction_ensemble import PHRASINGS, InstructionEnsemble

from slmbench import classify_with_lm
from slmbench.testing import make_context, parametrize_with_checks, toy_splits


@parametrize_with_checks([InstructionEnsemble])
def test_slmbench_protocol(strategy, check):
    check(strategy)


def test_the_probabilities_are_the_mean_of_those_of_each_phrasing(tmp_path):
    train, validation, test = toy_splits()
    context = make_context(InstructionEnsemble, tmp_path / "artifacts", instructions=2, calibration="none")
    strategy = InstructionEnsemble(context)

    strategy.fit(train, validation)
    predictions = strategy.predict(test.texts)

    model, tokenizer = context.models.causal_lm()
    each = [classify_with_lm(strategy.asked_as(phrasing), model, tokenizer, test.texts) for phrasing in PHRASINGS[:2]]
    np.testing.assert_allclose(predictions.probabilities, np.mean([e.predictions.probabilities for e in each], axis=0), atol=1e-6)
    assert strategy.labelled_examples == 0
    assert strategy.prompt_tokens_per_example == sum(e.prompt_tokens_per_example for e in each)
    assert 0 <= strategy.details["agreement"] <= 1 and len(strategy.details["per_instruction"]) == 2
    asked = json.loads((tmp_path / "artifacts" / "instructions.json").read_text())
    assert asked[0]["instruction"] == context.task.instruction and asked[1]["instruction"].startswith(context.task.description)
