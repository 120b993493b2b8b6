"""instruction-ensemble: zero-shot asked several ways, the answers' probabilities averaged.

A small LM's zero-shot answer moves with the wording of the question. This strategy asks it in
``instructions`` ways (the task's own instruction first, then phrasings built from the task's
description), scores each label's answer under each phrasing with the shared causal LM through
``slmbench.classify_with_lm``, removes each phrasing's own answer bias (``calibration``, as
zero-shot does) and averages the probabilities. It trains nothing and reads no label; prediction
costs ``instructions`` times zero-shot. The artifact is the phrasings with their measured biases
(``instructions.json``); ``details`` say how often the phrasings agree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from pydantic import Field

from slmbench import (
    Examples,
    Family,
    Predictions,
    PromptOptions,
    RunContext,
    SharedModel,
    Strategy,
    StrategyMetadata,
    hookimpl,
)

PHRASINGS = (
    "{instruction}",
    "{description}\n\nWhich label describes this text best?",
    "Read the text and classify it. The task: {description}",
    "You are an expert annotator. {instruction}",
)
"""Ways to ask; ``{instruction}`` and ``{description}`` are the task's."""


class InstructionEnsemble(Strategy):
    metadata = StrategyMetadata(
        name="instruction-ensemble",
        description="Zero-shot under several phrasings of the instruction, calibrated probabilities averaged",
        family=Family.PROMPTING,
        calls=(SharedModel.CAUSAL_LM,),
        reads_labels=False,
    )

    class Options(PromptOptions):  # calibration and calibration_texts, as zero-shot has them
        instructions: int = Field(3, ge=1, le=len(PHRASINGS), description="phrasings asked, the task's own first")

    def asked_as(self, phrasing: str) -> RunContext:
        """The run context with the task's instruction replaced by ``phrasing``."""
        task = self.context.task
        instruction = phrasing.format(instruction=task.instruction, description=task.description)
        return dataclasses.replace(self.context, task=dataclasses.replace(task, instruction=instruction))

    def fit(self, train: Examples, validation: Examples) -> None:
        """Measure each phrasing's answer bias on unlabelled train texts; no label is read."""
        from slmbench import estimate_calibration

        model, tokenizer = self.context.models.causal_lm()
        self.contexts = [self.asked_as(phrasing) for phrasing in PHRASINGS[: self.options.instructions]]
        self.calibrations = [
            estimate_calibration(context, model, tokenizer, self.options.calibration, train.texts, sample=self.options.calibration_texts)
            for context in self.contexts
        ]
        self.labelled_examples = 0
        asked = [
            {"instruction": c.task.instruction, "calibration": b.model_dump(mode="json")} for c, b in zip(self.contexts, self.calibrations)
        ]
        (self.context.artifact_dir / "instructions.json").write_text(json.dumps(asked, indent=1), encoding="utf-8")

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        from slmbench import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        answers = [
            classify_with_lm(context, model, tokenizer, texts, calibration=calibration)
            for context, calibration in zip(self.contexts, self.calibrations)
        ]
        probabilities = np.mean([answer.predictions.probabilities for answer in answers], axis=0)
        votes = np.array([answer.predictions.labels for answer in answers])
        self.prompt_tokens_per_example = sum(answer.prompt_tokens_per_example for answer in answers)
        self.details = {
            "agreement": round(float((votes == votes[0]).all(axis=0).mean()), 4),  # share of texts all phrasings agree on
            "per_instruction": [{**a.details, "calibration": b.model_dump(mode="json")} for a, b in zip(answers, self.calibrations)],
        }
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)


@hookimpl
def register_strategies(register) -> None:
    register(InstructionEnsemble)
