"""few-shot: the zero-shot prompt preceded by a few labelled train examples, the same for every text.

``shots_per_class`` train examples of each label (all of a rarer label) are drawn once per seed,
labels interleaved, and placed before the text as earlier turns of the conversation (user: example,
assistant: its label). As every prompt starts with the same demonstrations, the scoring engine
computes them once and reuses their cache (see ``slmbench.lm.scoring``). Demonstrations are
shortened, then dropped, if the prompt could exceed ``max_prompt_tokens`` (``slmbench.lm.retrieval``).

Calibration (``slmbench.lm.prompts.Calibration``): the LM's answer bias, measured with the same
demonstrations on unlabelled train texts, is divided out, and the train split's label frequencies
put in its place (``label_prior``); the trial then counts the whole train split as labelled examples.

It saves the demonstrations as shown and the calibration (``prompt.json``): train texts, in the clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from slmbench.lm.retrieval import DemonstrationOptions
from slmbench.strategy import Examples, Family, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl


def choose_demonstrations(labels: Sequence[int], n_labels: int, shots_per_class: int, seed: int) -> list[int]:
    """Train positions of ``shots_per_class`` examples per label, drawn with ``seed``, labels interleaved.

    Each round holds one example of every label, in a seeded random order: small LMs lean towards
    the labels of the last demonstrations, so a run of one label at the end would bias every answer.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels)
    per_label = [rng.permutation(np.flatnonzero(label_array == label))[:shots_per_class] for label in range(n_labels)]
    return [
        int(per_label[label][shot])
        for shot in range(shots_per_class)
        for label in rng.permutation(n_labels)
        if shot < len(per_label[label])
    ]


class FewShotOptions(DemonstrationOptions):
    shots_per_class: Annotated[int, Search.integer(1, 4)] = Field(2, ge=1, le=64, description="demonstrations of each label")


class FewShot(Strategy):
    metadata = StrategyMetadata(
        name="few-shot",
        description="Instruction prompt with k fixed, class-balanced labelled demonstrations; no training",
        family=Family.PROMPTING,
        calls=(SharedModel.CAUSAL_LM,),
    )

    Options = FewShotOptions
    training_texts_kept = "its demonstrations: train texts with their labels, verbatim (prompt.json)"
    options: FewShotOptions

    def fit(self, train: Examples, validation: Examples) -> None:
        """Choose the demonstrations, cut them to what the context window allows, calibrate."""
        from slmbench.lm.prompts import label_frequencies, truncate_text
        from slmbench.lm.retrieval import plan_demonstrations
        from slmbench.strategy.prompting import estimate_calibration

        model, tokenizer = self.context.models.causal_lm()
        task, options = self.context.task, self.options
        chosen = choose_demonstrations(train.labels, len(task.labels), options.shots_per_class, self.context.seed)
        self.plan = plan_demonstrations(
            task,
            tokenizer,
            demonstrations=len(chosen),
            demo_tokens=options.demo_tokens,
            max_input_tokens=self.context.budget.max_input_tokens,
            context_window=options.max_prompt_tokens or model.config.max_position_embeddings,
            prompt_format=self.context.models.prompt_format,
        )
        chosen = chosen[: self.plan.demonstrations]
        self.demonstrations = [
            (truncate_text(tokenizer, train.texts[i], self.plan.tokens_per_demonstration), train.labels[i]) for i in chosen
        ]
        uses_prior = options.label_prior == "train" and options.calibration != "none"
        self.calibration = estimate_calibration(
            self.context,
            model,
            tokenizer,
            options.calibration,
            train.texts,
            sample=options.calibration_texts,
            prior=label_frequencies(train.labels, len(task.labels)) if uses_prior else None,
            demonstrations_for=lambda texts: [self.demonstrations] * len(texts),
        )
        self.labelled_examples = len(train) if uses_prior else len(chosen)
        self.train_examples_seen = self.labelled_examples
        self.details = {
            "demonstrations": [{"train_index": i, "label": task.label_names[train.labels[i]]} for i in chosen],
            "demonstration_plan": self.plan.to_dict(),
        }

    def save(self, directory: Path) -> None:
        """The demonstrations as shown (cut to the plan) and the calibration (``prompt.json``): they hold train texts."""
        from slmbench.strategy.prompting import save_prompt

        save_prompt(directory, self.calibration, demonstrations=self.demonstrations)

    def load(self, directory: Path) -> None:
        from slmbench.strategy.prompting import load_prompt

        self.calibration, saved = load_prompt(directory)
        self.demonstrations = [(text, int(label)) for text, label in saved["demonstrations"]]

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.strategy.prompting import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        result = classify_with_lm(self.context, model, tokenizer, texts, [self.demonstrations] * len(texts), self.calibration)
        self.prompt_tokens_per_example = result.prompt_tokens_per_example
        self.details.update(result.details)
        return result.predictions


@hookimpl
def register_strategies(register) -> None:
    register(FewShot)
