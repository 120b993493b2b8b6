"""embedding-classifier: sentence embeddings of each text, then a logistic regression on them.

The feature-based approach: the embedding model stays frozen and only a linear classifier is
trained. Its regularisation strength ``C`` is an option, searched on the validation split like
every strategy's (``slmbench.engine.tuning``). The trained classifier is saved in skops' format
(``classifier.skops``, never pickled).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from slmbench.records import ExportForm
from slmbench.strategy import Examples, Family, Options, Predictions, Search, SharedModel, Strategy, StrategyMetadata, hookimpl

CLASSIFIER_FILE = "classifier.skops"


class EmbeddingClassifierOptions(Options):
    C: Annotated[float, Search.log(0.01, 100.0)] = Field(
        1.0, gt=0, description="inverse regularisation strength of the logistic regression"
    )


class EmbeddingClassifier(Strategy):
    metadata = StrategyMetadata(
        name="embedding-classifier",
        description="Frozen sentence embeddings + logistic regression (scikit-learn)",
        family=Family.FEATURE,
        calls=(SharedModel.EMBEDDER,),
    )

    Options = EmbeddingClassifierOptions
    options: EmbeddingClassifierOptions

    def fit(self, train: Examples, validation: Examples) -> None:
        from sklearn.linear_model import LogisticRegression

        features = self.context.models.encode(train.texts, f"{self.name}: encoding train")
        self.classifier = LogisticRegression(C=self.options.C, max_iter=2000, random_state=self.context.seed)
        self.classifier.fit(features, train.labels)
        self.details = {"embedding_dim": int(features.shape[1])}

    def save(self, directory: Path) -> None:
        """The logistic regression in skops' format (``classifier.skops``); the embedding model is the shared one."""
        import skops.io

        skops.io.dump(self.classifier, directory / CLASSIFIER_FILE)

    def load(self, directory: Path) -> None:
        import skops.io

        self.classifier = skops.io.load(directory / CLASSIFIER_FILE)  # refuses any type outside scikit-learn's and numpy's

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """The embedding model as a sentence-transformers folder and the logistic regression beside it."""
        import skops.io

        from slmbench.lm.exported import HEAD_FILE, SENTENCE_TRANSFORMERS_DIR, save_sentence_transformer

        super().export(directory, quantize)
        save_sentence_transformer(self.context.models.embedder(), directory / SENTENCE_TRANSFORMERS_DIR)
        skops.io.dump(self.classifier, directory / HEAD_FILE)
        form = ExportForm(
            kind="sentence-transformers-skops",
            path=SENTENCE_TRANSFORMERS_DIR,
            description="the sentence-transformers embedding model and the logistic regression on its unit vectors",
            settings={"head": HEAD_FILE, "n_labels": len(self.context.task.labels)},
        )
        return [form]

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        features = self.context.models.encode(texts, f"{self.name}: encoding")
        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        probabilities[:, self.classifier.classes_] = self.classifier.predict_proba(features)  # labels absent from train stay 0
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        trainable = self.classifier.coef_.size + self.classifier.intercept_.size
        return trainable, trainable + self.shared_parameters()


@hookimpl
def register_strategies(register):
    register(EmbeddingClassifier)
