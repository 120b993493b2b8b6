"""rag: each text's prompt shows its k most similar labelled train examples, then the text itself.

The train split is embedded with the shared embedding model into a FAISS index (exact, or HNSW for
large train splits; see ``slmbench.lm.retrieval``). For each text, its k nearest train examples become
the demonstrations, the most similar last, next to the text. The index never holds a test text and
a search never returns the query's own text, so no demonstration can give the answer away.
Demonstrations are shortened, then dropped, if the prompt could exceed ``max_prompt_tokens``.

Calibration (``slmbench.lm.prompts.Calibration``): the LM's answer bias is measured on train texts
with their own retrieved neighbours, divided out, and the train split's label frequencies put in
its place (``label_prior``).

It saves the index with its labels, the train texts, the plan and the calibration: train texts, in the clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from slmbench.lm.retrieval import DEFAULT_K, DemonstrationOptions, Neighbours
from slmbench.strategy import Examples, Family, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl


class RagOptions(DemonstrationOptions):
    k: Annotated[int, Search.integer(1, 8)] = Field(
        DEFAULT_K, ge=1, le=64, description="retrieved demonstrations per text (fewer if the prompt would not fit)"
    )


class Rag(Strategy):
    metadata = StrategyMetadata(
        name="rag",
        description="Prompt with the k most similar train examples (FAISS over sentence embeddings) as demonstrations",
        family=Family.RETRIEVAL,
        calls=(SharedModel.CAUSAL_LM, SharedModel.EMBEDDER),
    )

    Options = RagOptions
    training_texts_kept = "every train text with its label (prompt.json) and their embeddings (train.faiss)"
    options: RagOptions

    def fit(self, train: Examples, validation: Examples) -> None:
        """Index the train split, plan the prompt's demonstrations to fit the context window, calibrate."""
        from slmbench.lm.prompts import label_frequencies
        from slmbench.lm.retrieval import TrainIndex, plan_demonstrations
        from slmbench.strategy.prompting import estimate_calibration

        model, tokenizer = self.context.models.causal_lm()
        task, options = self.context.task, self.options
        self.train_texts = train.texts
        self.index = TrainIndex(self.context.models.encode, train)
        self.plan = plan_demonstrations(
            task,
            tokenizer,
            demonstrations=options.k,
            demo_tokens=options.demo_tokens,
            max_input_tokens=self.context.budget.max_input_tokens,
            context_window=options.max_prompt_tokens or model.config.max_position_embeddings,
            prompt_format=self.context.models.prompt_format,
        )
        uses_prior = options.label_prior == "train" and options.calibration != "none"
        self.calibration = estimate_calibration(
            self.context,
            model,
            tokenizer,
            options.calibration,
            train.texts,
            sample=options.calibration_texts,
            prior=label_frequencies(train.labels, len(task.labels)) if uses_prior else None,
            demonstrations_for=lambda texts: self._demonstrations(texts)[0],
        )
        self.details = {**self.index.describe(), "k": self.plan.demonstrations, "demonstration_plan": self.plan.to_dict()}

    def save(self, directory: Path) -> None:
        """The FAISS index with its labels, and the train texts, the plan and the calibration (``prompt.json``)."""
        from slmbench.strategy.prompting import save_prompt

        self.index.save(directory)
        save_prompt(directory, self.calibration, train_texts=self.train_texts, plan=self.plan.to_dict())

    def load(self, directory: Path) -> None:
        from slmbench.lm.retrieval import DemonstrationPlan, TrainIndex
        from slmbench.strategy.prompting import load_prompt

        self.index = TrainIndex.load(self.context.models.encode, directory)
        self.calibration, saved = load_prompt(directory)
        self.train_texts, self.plan = saved["train_texts"], DemonstrationPlan(**saved["plan"])

    def _demonstrations(self, texts: Sequence[str]) -> tuple[list[list[tuple[str, int]]], Neighbours]:
        """Each text's nearest train examples as (text, label) demonstrations, the most similar last."""
        from slmbench.lm.prompts import truncate_text

        _, tokenizer = self.context.models.causal_lm()
        neighbours = self.index.search(texts, self.plan.demonstrations)
        cut = {
            i: truncate_text(tokenizer, self.train_texts[i], self.plan.tokens_per_demonstration) for i in set().union(*neighbours.indices)
        }
        demonstrations = [[(cut[i], self.index.labels[i]) for i in reversed(nearest)] for nearest in neighbours.indices]
        return demonstrations, neighbours

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.strategy.prompting import classify_with_lm

        model, tokenizer = self.context.models.causal_lm()
        demonstrations, neighbours = self._demonstrations(texts)
        result = classify_with_lm(self.context, model, tokenizer, texts, demonstrations, self.calibration)
        self.prompt_tokens_per_example = result.prompt_tokens_per_example
        self.details.update(result.details, self_matches_excluded=neighbours.self_matches_excluded, neighbours=neighbours.indices)
        return result.predictions


@hookimpl
def register_strategies(register) -> None:
    register(Rag)
