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

    def fit(self, train: Examples, validation: Examples) -> None:
        """Nothing to learn: zero-shot never looks at the labelled data."""

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.prompts import build_messages
        from slmbench.scoring import score_choices

        model, tokenizer = self.context.models.causal_lm()
        task, budget = self.context.task, self.context.budget
        conversations = [
            build_messages(task, text, tokenizer=tokenizer, max_input_tokens=budget.max_input_tokens) for text in texts
        ]
        scores = score_choices(
            model,
            tokenizer,
            conversations,
            [label.verbalizer for label in task.labels],
            batch_size=budget.batch_size,
            progress=self.context.progress,
        )
        self.details = {
            "prompt_tokens_per_example": sum(scores.prompt_tokens) / max(len(texts), 1),
            "shared_prefix_tokens": scores.shared_prefix_tokens,
            "compute_dtype": scores.compute_dtype,
        }
        return Predictions(labels=scores.labels, probabilities=scores.probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        model, _ = self.context.models.causal_lm()
        return 0, sum(p.numel() for p in model.parameters())


@hookimpl
def register_strategies(register) -> None:
    register(ZeroShot)
