"""tfidf-linear: TF-IDF over word 1-2 grams and a logistic regression, the classic text-classification floor.

No language model is involved and it trains in seconds: every report shows what a strategy costing
a thousand times more must beat. Terms are lowercased word unigrams and bigrams with sublinear tf
(1 + log tf) and the idf of the train split; ``C`` is searched on the validation split like every
strategy's option (``slmbench.engine.tuning``). The artifact is the vocabulary as JSON and the numbers
(idf, weights, intercepts) as safetensors: nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from slmbench.strategy import Examples, Family, Options, Predictions, Search, Strategy, StrategyMetadata, hookimpl


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

    def fit(self, train: Examples, validation: Examples) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(ngram_range=(1, self.options.max_ngram), sublinear_tf=True, min_df=self.options.min_df)
        features = self.vectorizer.fit_transform(train.texts)
        self.classifier = LogisticRegression(C=self.options.C, max_iter=2000, random_state=self.context.seed)
        self.classifier.fit(features, train.labels)
        self._save()
        self.details = {"vocabulary_size": len(self.vectorizer.vocabulary_)}

    def _save(self) -> None:
        """Write ``vocabulary.json`` (terms in feature order) and ``weights.safetensors``."""
        from safetensors.numpy import save_file

        directory = self.context.artifact_dir
        terms = self.vectorizer.get_feature_names_out().tolist()
        (directory / "vocabulary.json").write_text(json.dumps({"terms": terms}), encoding="utf-8")
        save_file(
            {
                "idf": self.vectorizer.idf_,
                "coef": self.classifier.coef_,
                "intercept": self.classifier.intercept_,
                "classes": self.classifier.classes_,
            },
            str(directory / "weights.safetensors"),
        )

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        probabilities[:, self.classifier.classes_] = self.classifier.predict_proba(self.vectorizer.transform(texts))
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        weights = self.classifier.coef_.size + self.classifier.intercept_.size
        return weights, weights


@hookimpl
def register_strategies(register):
    register(TfidfLinear)
