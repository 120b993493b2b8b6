"""rag: each text's prompt shows its k most similar labelled train examples, then the text itself.

The train split is embedded with the shared embedding model into a FAISS index (exact, or HNSW for
large train splits; see ``slmbench.retrieval``). For each text, its k nearest train examples become
the demonstrations, the most similar last, next to the text. The index never holds a test text and
a search never returns the query's own text, so no demonstration can give the answer away.

Params: ``k`` (default ``slmbench.retrieval.DEFAULT_K``, 4); ``demo_tokens`` (default
``DEFAULT_DEMO_TOKENS``, 128, or the profile's ``max_input_tokens`` if lower); ``max_prompt_tokens``
(default: the LM's context window). Demonstrations are shortened, then dropped, if the prompt
could exceed it.
"""

from __future__ import annotations

from typing import Sequence

from slmbench.hookspecs import hookimpl
from slmbench.strategy import Examples, Family, Predictions, Strategy


class Rag(Strategy):
    name = "rag"
    description = "Prompt with the k most similar train examples (FAISS over sentence embeddings) as demonstrations"
    family = Family.RETRIEVAL
    uses_models = ("causal_lm", "embedder")

    def fit(self, train: Examples, validation: Examples) -> None:
        """Index the train split and plan the prompt's demonstrations to fit the context window."""
        from slmbench.retrieval import DEFAULT_DEMO_TOKENS, DEFAULT_K, TrainIndex, plan_demonstrations

        model, tokenizer = self.context.models.causal_lm()
        task, budget, params = self.context.task, self.context.budget, self.context.params
        self.train = train
        self.index = TrainIndex(self.context.models.embedder(), train, self.context.progress)
        self.index.save(str(self.context.artifact_dir / "train.faiss"))
        self.plan = plan_demonstrations(
            task,
            tokenizer,
            demonstrations=params.get("k", DEFAULT_K),
            demo_tokens=params.get("demo_tokens", DEFAULT_DEMO_TOKENS),
            max_input_tokens=budget.max_input_tokens,
            context_window=params.get("max_prompt_tokens", model.config.max_position_embeddings),
        )
        self.details = {
            **self.index.describe(),
            "k": self.plan.demonstrations,
            "demonstration_plan": self.plan.to_dict(),
            "labelled_examples": len(train),
        }

    def predict(self, texts: Sequence[str]) -> Predictions:
        from slmbench.prompts import classify_with_lm, truncate_text

        model, tokenizer = self.context.models.causal_lm()
        neighbours = self.index.search(texts, self.plan.demonstrations)
        demo_texts = {
            i: truncate_text(tokenizer, self.train.texts[i], self.plan.tokens_per_demonstration)
            for i in set().union(*neighbours.indices)
        }
        demonstrations = [[(demo_texts[i], self.train.labels[i]) for i in reversed(nearest)] for nearest in neighbours.indices]
        predictions, details = classify_with_lm(self.context, model, tokenizer, texts, demonstrations)
        self.details.update(
            details, self_matches_excluded=neighbours.self_matches_excluded, neighbours=neighbours.indices
        )
        return predictions

    def parameter_counts(self) -> tuple[int, int]:
        from slmbench.models import param_count

        model, _ = self.context.models.causal_lm()
        return 0, param_count(model) + param_count(self.context.models.embedder())


@hookimpl
def register_strategies(register) -> None:
    register(Rag)
