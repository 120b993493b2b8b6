"""tfidf-linear: TF-IDF over word 1-2 grams and a logistic regression, the classic text-classification floor.

No language model is involved and it trains in seconds: every report shows what a strategy costing
a thousand times more must beat. Terms are lowercased word unigrams and bigrams with sublinear tf
(1 + log tf) and the idf of the train split; ``C`` is searched on the validation split like every
strategy's option (``slmbench.engine.tuning``). The artifact is the fitted scikit-learn pipeline in
skops' format (``pipeline.skops``), which loads only scikit-learn's and numpy's types: nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from slmbench.records import ExportForm
from slmbench.strategy import Examples, Family, Options, Predictions, Search, Strategy, StrategyMetadata, hookimpl

PIPELINE_FILE = "pipeline.skops"


class TfidfLinearOptions(Options):
    C: Annotated[float, Search.log(0.1, 1000.0)] = Field(
        10.0, gt=0, description="inverse regularisation strength of the logistic regression"
    )
    max_ngram: int = Field(2, ge=1, le=3, description="longest word n-gram used as a feature")
    min_df: int = Field(1, ge=1, description="ignore terms in fewer train texts than this")


class TfidfLinear(Strategy):
    metadata = StrategyMetadata(
        name="tfidf-linear",
        description="TF-IDF word 1-2 grams + logistic regression (scikit-learn), no language model",
        family=Family.FEATURE,
    )

    Options = TfidfLinearOptions
    options: TfidfLinearOptions
    training_texts_kept = "the vocabulary: every word and word pair of the train texts (pipeline.skops)"

    def fit(self, train: Examples, validation: Examples) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        vectorizer = TfidfVectorizer(ngram_range=(1, self.options.max_ngram), sublinear_tf=True, min_df=self.options.min_df)
        classifier = LogisticRegression(C=self.options.C, max_iter=2000, random_state=self.context.seed)
        self.pipeline = make_pipeline(vectorizer, classifier).fit(train.texts, train.labels)
        self.details = {"vocabulary_size": len(vectorizer.vocabulary_)}

    def save(self, directory: Path) -> None:
        """The fitted scikit-learn pipeline in skops' format (``pipeline.skops``): usable without slmbench."""
        import skops.io

        skops.io.dump(self.pipeline, directory / PIPELINE_FILE)

    def load(self, directory: Path) -> None:
        import skops.io

        self.pipeline = skops.io.load(directory / PIPELINE_FILE)  # refuses any type outside scikit-learn's and numpy's

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """The pipeline itself, for scikit-learn alone."""
        super().export(directory, quantize)
        self.save(directory)
        n_labels = len(self.context.task.labels)
        return [
            ExportForm(kind="skops-pipeline", path=PIPELINE_FILE, description="the scikit-learn pipeline", settings={"n_labels": n_labels})
        ]

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        classes = self.pipeline.classes_
        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        probabilities[:, classes] = self.pipeline.predict_proba(list(texts))
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        classifier = self.pipeline[-1]
        weights = classifier.coef_.size + classifier.intercept_.size
        return weights, weights


@hookimpl
def register_strategies(register):
    register(TfidfLinear)
