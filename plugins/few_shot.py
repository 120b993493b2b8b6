"""few-shot: the zero-shot prompt preceded by a few labelled train examples, the same for every text.

``shots_per_class`` train examples of each label (default 2; all of a rarer label) are drawn once
per run with the run's seed, labels interleaved, and placed before the text as earlier turns of
the conversation (user: example, assistant: its label). As every prompt starts with the same
demonstrations, the scoring engine computes them once and reuses their cache (see
``slmbench.scoring``).

Params: ``shots_per_class``; ``demo_tokens`` (default ``slmbench.retrieval.DEFAULT_DEMO_TOKENS``,
128, or the profile's ``max_input_tokens`` if lower); ``max_prompt_tokens`` (default: the LM's
context window). Demonstrations are shortened, then
dropped, if the prompt could exceed ``max_prompt_tokens`` (see ``slmbench.retrieval``).
"""

from __future__ import annotations

from typing import Sequence

from slmbench.hookspecs import hookimpl
from slmbench.strategy import Examples, Family, Predictions, Strategy

DEFAULT_SHOTS_PER_CLASS = 2


def choose_demonstrations(labels: Sequence[int], n_labels: int, shots_per_class: int, seed: int) -> list[int]:
    """Train positions of ``shots_per_class`` examples per label, drawn with ``seed``, labels interleaved.

    Each round holds one example of every label, in a seeded random order: small LMs lean towards
    the labels of the last demonstrations, so a run of one label at the end would bias every answer.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    per_label = [rng.permutation(np.flatnonzero(labels == label))[:shots_per_class] for label in range(n_labels)]
    return [
        int(per_label[label][shot])
        for shot in range(shots_per_class)
        for label in rng.permutation(n_labels)
        if shot < len(per_label[label])
    ]


class FewShot(Strategy):
    name = "few-shot"
    description = "Instruction prompt with k fixed, class-balanced labelled demonstrations; no training"
    family = Family.PROMPTING
    uses_models = ("causal_lm",)

    def fit(self, train: Examples, validation: Examples) -> None:
        """Choose the demonstrations and cut them to what the context window allows."""
        from slmbench.prompts import truncate_text
        from slmbench.retrieval import DEFAULT_DEMO_TOKENS, plan_demonstrations

        model, tokenizer = self.context.models.causal_lm()
        task, budget, params = self.context.task, self.context.budget, self.context.params
        shots = params.get("shots_per_class", DEFAULT_SHOTS_PER_CLASS)
        chosen = choose_demonstrations(train.labels, len(task.labels), shots, self.context.seed)
        self.plan = plan_demonstrations(
            task,
            tokenizer,
            demonstrations=len(chosen),
            demo_tokens=params.get("demo_tokens", DEFAULT_DEMO_TOKENS),
            max_input_tokens=budget.max_input_tokens,
            context_window=params.get("max_prompt_tokens", model.config.max_position_embeddings),
        )
        chosen = chosen[: self.plan.demonstrations]
        self.demonstrations = [
            (truncate_text(tokenizer, train.texts[i], self.plan.tokens_per_demonstration), train.labels[i])
            for i in chosen
        ]
        self.details = {
            "shots_per_class": shots,
            "demonstrations": [{"train_index": i, "label": task.label_names[train.labels[i]]} for i in chosen],
            "labelled_examples": len(chosen),
            "demonstration_plan": self.plan.to_dict(),
        }

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.prompts import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        predictions, details = classify_with_lm(self.context, model, tokenizer, texts, [self.demonstrations] * len(texts))
        self.details.update(details)
        return predictions

    def parameter_counts(self) -> tuple[int, int]:
        from slmbench.models import param_count

        model, _ = self.context.models.causal_lm()
        return 0, param_count(model)


@hookimpl
def register_strategies(register) -> None:
    register(FewShot)
