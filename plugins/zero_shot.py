"""zero-shot: ask the instruction-tuned LM to classify each text, with no example and no training.

The prompt is the task instruction, the list of allowed answers and the text (see
``slmbench.lm.prompts``). The model does not generate: each label's verbalizer is scored as the
assistant's answer by log-likelihood, so every text gets a valid label and a probability per label
(see ``slmbench.lm.scoring``).

Small LMs prefer some answers whatever the text. By default that bias is measured on unlabelled
train texts and divided out (batch calibration, Zhou et al. 2023; ``calibration``): zero-shot reads
no label, so it restores no label prior either (every label equally likely a priori). The calibration is what it saves
(``prompt.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slmbench.lm.prompts import PromptOptions
from slmbench.strategy import Examples, Family, Predictions, SharedModel, Strategy, StrategyMetadata, hookimpl


class ZeroShot(Strategy):
    metadata = StrategyMetadata(
        name="zero-shot",
        description="Instruction prompt; each label scored by the LM's log-likelihood, no training",
        family=Family.PROMPTING,
        calls=(SharedModel.CAUSAL_LM,),
        reads_labels=False,
    )
    Options = PromptOptions
    options: PromptOptions

    def fit(self, train: Examples, validation: Examples) -> None:
        """Measure the LM's answer bias; no label is read."""
        from slmbench.strategy.prompting import estimate_calibration

        model, tokenizer = self.context.models.causal_lm()
        self.calibration = estimate_calibration(
            self.context, model, tokenizer, self.options.calibration, train.texts, sample=self.options.calibration_texts
        )
        self.labelled_examples = 0

    def save(self, directory: Path) -> None:
        """The calibration (``prompt.json``): all that zero-shot learns."""
        from slmbench.strategy.prompting import save_prompt

        save_prompt(directory, self.calibration)

    def load(self, directory: Path) -> None:
        from slmbench.strategy.prompting import load_prompt

        self.calibration, _ = load_prompt(directory)

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.strategy.prompting import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        result = classify_with_lm(self.context, model, tokenizer, texts, calibration=self.calibration)
        self.prompt_tokens_per_example = result.prompt_tokens_per_example
        self.details.update(result.details)
        return result.predictions


@hookimpl
def register_strategies(register) -> None:
    register(ZeroShot)
