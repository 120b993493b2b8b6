"""knn-vote: the label most voted by a text's k most similar train examples, weighted by similarity.

rag's retrieval without the language model (same index, same k by default): each of the k nearest
train examples votes for its label with its cosine similarity (negative ones count zero), and the
probabilities are the normalised votes. Set beside rag, it shows how much of rag's result the
retrieval alone explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from slmbench.lm.retrieval import DEFAULT_K
from slmbench.strategy import Examples, Family, Options, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl

if TYPE_CHECKING:
    import numpy as np


def vote(neighbour_labels: Sequence[Sequence[int]], similarities: Sequence[Sequence[float]], n_labels: int) -> np.ndarray:
    """(n_texts, n_labels) normalised similarity-weighted votes; equal votes if no similarity is positive."""
    import numpy as np

    votes = np.zeros((len(neighbour_labels), n_labels))
    for row, labels, weights in zip(votes, neighbour_labels, similarities):
        positive = np.clip(weights, 0, None)
        row += np.bincount(labels, positive if positive.sum() > 0 else None, minlength=n_labels)
    return votes / votes.sum(axis=1, keepdims=True)


class KnnVoteOptions(Options):
    k: Annotated[int, Search.integer(1, 32)] = Field(DEFAULT_K, ge=1, le=1024, description="neighbours that vote for each text")


class KnnVote(Strategy):
    metadata = StrategyMetadata(
        name="knn-vote",
        description="Similarity-weighted vote of the k most similar train examples (FAISS), no language model",
        family=Family.RETRIEVAL,
        calls=(SharedModel.EMBEDDER,),
    )

    Options = KnnVoteOptions
    training_texts_kept = "the embeddings of every train text with its label (train.faiss, train_index.json); no text itself"
    options: KnnVoteOptions

    def fit(self, train: Examples, validation: Examples) -> None:
        """Index the train split."""
        from slmbench.lm.retrieval import TrainIndex

        self.index = TrainIndex(self.context.models.encode, train)
        self.details = self.index.describe()

    def save(self, directory: Path) -> None:
        """The FAISS index and its labels (no train text: a hash of each tells a query equal to one)."""
        self.index.save(directory)

    def load(self, directory: Path) -> None:
        from slmbench.lm.retrieval import TrainIndex

        self.index = TrainIndex.load(self.context.models.encode, directory)

    def predict(self, texts: Sequence[str]) -> Predictions:
        neighbours = self.index.search(texts, self.options.k)
        neighbour_labels = [[self.index.labels[i] for i in nearest] for nearest in neighbours.indices]
        probabilities = vote(neighbour_labels, neighbours.similarities, len(self.context.task.labels))
        self.details.update(self_matches_excluded=neighbours.self_matches_excluded, neighbours=neighbours.indices)
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)


@hookimpl
def register_strategies(register) -> None:
    register(KnnVote)
