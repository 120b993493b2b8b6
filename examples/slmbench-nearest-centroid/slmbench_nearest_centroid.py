"""nearest-centroid: each label is a few prototypes in the shared sentence-embedding space; a text
takes the label of its most similar prototype.

Fitting is averaging: the unit embeddings of a label's train texts, grouped into ``prototypes``
clusters (k-means, seeded) when one mean is too coarse for a varied label, each cluster's mean
scaled back to unit length. A text's score for a label is its cosine similarity to that label's
closest prototype, and the probabilities are a softmax of the scores at ``temperature``. It keeps a
handful of vectors per label where knn-vote keeps every train example, and trains nothing by
gradient where embedding-classifier fits a logistic regression. It saves the prototypes as
safetensors and the settings as JSON (nothing is pickled) and loads them back, so that
``slmbench predict`` can apply a trial to new texts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from slmbench import Examples, Family, Options, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl

if TYPE_CHECKING:
    import numpy as np


def label_prototypes(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Up to ``count`` unit prototypes of one label's unit ``vectors``: k-means cluster means, rescaled."""
    import numpy as np
    from sklearn.cluster import KMeans

    count = min(count, len(vectors))
    if count == 1:
        means = vectors.mean(axis=0, keepdims=True)
    else:
        means = KMeans(n_clusters=count, n_init=4, random_state=seed).fit(vectors).cluster_centers_
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


class NearestCentroid(Strategy):
    metadata = StrategyMetadata(
        name="nearest-centroid",
        description="Closest label prototype (k-means means) in the shared sentence-embedding space",
        family=Family.FEATURE,
        calls=(SharedModel.EMBEDDER,),
    )

    class Options(Options):
        prototypes: Annotated[int, Search.integer(1, 8)] = Field(
            1, ge=1, le=32, description="prototypes per label: k-means clusters of its train texts"
        )
        temperature: float = Field(
            0.05, gt=0, le=1, description="softmax temperature over cosine similarities (lower: more confident probabilities)"
        )

    def fit(self, train: Examples, validation: Examples) -> None:
        import numpy as np

        vectors = self.context.models.encode(train.texts, f"{self.name}: encoding train")
        labels = np.asarray(train.labels)
        present = sorted(set(train.labels))  # a small train subset may lack a label: it is never predicted
        groups = [label_prototypes(vectors[labels == label], self.options.prototypes, self.context.seed) for label in present]
        self.vectors = np.concatenate(groups)
        self.labels = np.concatenate([np.full(len(group), label) for label, group in zip(present, groups)])
        names = self.context.task.label_names
        self.details = {"prototypes": {names[label]: len(group) for label, group in zip(present, groups)}}

    def save(self, directory: Path) -> None:
        """The prototypes and their labels (safetensors), and the settings they go with (JSON)."""
        from safetensors.numpy import save_file

        save_file({"vectors": self.vectors, "labels": self.labels}, str(directory / "prototypes.safetensors"))
        settings = {
            "label_names": self.context.task.label_names,
            "temperature": self.options.temperature,
            "embedding_model": self.context.models.embedding_model_name,
        }
        (directory / "prototypes.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """What ``save`` wrote: ``slmbench predict`` then applies the trial to new texts."""
        from safetensors.numpy import load_file

        saved = load_file(str(directory / "prototypes.safetensors"))
        self.vectors, self.labels = saved["vectors"], saved["labels"]

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        similarities = self.context.models.encode(texts, f"{self.name}: encoding") @ self.vectors.T
        scores = np.full((len(texts), len(self.context.task.labels)), -np.inf)
        for label in np.unique(self.labels):
            scores[:, label] = similarities[:, self.labels == label].max(axis=1)
        weights = np.exp((scores - scores.max(axis=1, keepdims=True)) / self.options.temperature)
        probabilities = weights / weights.sum(axis=1, keepdims=True)
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        return self.vectors.size, self.vectors.size + self.shared_parameters()


@hookimpl
def register_strategies(register) -> None:
    register(NearestCentroid)
