"""embedding-classifier: sentence embeddings of each text, then a logistic regression on them.

The feature-based approach: the embedding model stays frozen and only a linear classifier is
trained. Its regularisation strength is chosen on the validation split. The trained classifier is
saved as safetensors (never pickled).
"""

from __future__ import annotations

from typing import Sequence

from slmbench.hookspecs import hookimpl
from slmbench.strategy import Examples, Family, Predictions, Strategy

REGULARISATION_GRID = (0.1, 1.0, 10.0, 100.0)
ENCODE_BATCH = 64


class EmbeddingClassifier(Strategy):
    name = "embedding-classifier"
    description = "Frozen sentence embeddings + logistic regression (scikit-learn)"
    family = Family.FEATURE
    uses_models = ("embedder",)

    def _encode(self, texts: Sequence[str], what: str):
        import numpy as np

        embedder = self.context.models.embedder()
        batches = [texts[i : i + ENCODE_BATCH] for i in range(0, len(texts), ENCODE_BATCH)]
        vectors = [
            embedder.encode(list(batch), normalize_embeddings=True, show_progress_bar=False)
            for batch in self.context.progress.track(batches, f"{self.name}: encoding {what}")
        ]
        return np.concatenate(vectors)

    def fit(self, train: Examples, validation: Examples) -> None:
        from safetensors.numpy import save_file
        from sklearn.linear_model import LogisticRegression

        train_x = self._encode(train.texts, "train")
        validation_x = self._encode(validation.texts, "validation")
        scores = {}
        for c in REGULARISATION_GRID:
            candidate = LogisticRegression(C=c, max_iter=2000, random_state=self.context.seed)
            scores[c] = candidate.fit(train_x, train.labels).score(validation_x, validation.labels)
        best_c = max(scores, key=scores.get)
        self.classifier = LogisticRegression(C=best_c, max_iter=2000, random_state=self.context.seed)
        self.classifier.fit(train_x, train.labels)
        save_file(
            {"coef": self.classifier.coef_, "intercept": self.classifier.intercept_, "classes": self.classifier.classes_},
            str(self.context.artifact_dir / "classifier.safetensors"),
        )
        self.details = {
            "C": best_c,
            "validation_accuracy_by_C": {str(c): round(s, 4) for c, s in scores.items()},
            "embedding_dim": int(train_x.shape[1]),
            "max_seq_length": int(self.context.models.embedder().max_seq_length),
        }

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        class_probabilities = self.classifier.predict_proba(self._encode(texts, "test"))
        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        probabilities[:, self.classifier.classes_] = class_probabilities  # classes absent from train stay 0
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        from slmbench.models import param_count

        trainable = self.classifier.coef_.size + self.classifier.intercept_.size
        return trainable, trainable + param_count(self.context.models.embedder())


@hookimpl
def register_strategies(register):
    register(EmbeddingClassifier)
