"""zero-shot: ask the instruction-tuned LM to classify each text, with no example and no training.

The prompt is the task instruction, the list of allowed answers and the text (see
``slmbench.prompts``). The model does not generate: each label's verbalizer is scored as the
assistant's answer by log-likelihood, so every text gets a valid label and a probability per label
(see ``slmbench.scoring``).
"""

from __future__ import annotations

from typing import Sequence

from slmbench.hookspecs import hookimpl
from slmbench.strategy import Examples, Family, Predictions, Strategy


class ZeroShot(Strategy):
    name = "zero-shot"
    description = "Instruction prompt; each label scored by the LM's log-likelihood, no training"
    family = Family.PROMPTING
    uses_models = ("causal_lm",)
    learns_from_train = False

    def fit(self, train: Examples, validation: Examples) -> None:
        """Nothing to learn: zero-shot never looks at the labelled data."""

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.prompts import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        predictions, details = classify_with_lm(self.context, model, tokenizer, texts)
        self.details = {**details, "labelled_examples": 0}
        return predictions

    def parameter_counts(self) -> tuple[int, int]:
        model, _ = self.context.models.causal_lm()
        return 0, sum(p.numel() for p in model.parameters())


@hookimpl
def register_strategies(register) -> None:
    register(ZeroShot)
