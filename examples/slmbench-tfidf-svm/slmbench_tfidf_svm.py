"""tfidf-svm: TF-IDF over word 1-2 grams + a linear SVM, the classic text-classification baseline.

No language model is involved, so ``uses_models`` is empty and nothing shared is loaded for it.
The SVM's C is chosen on the validation split. The artifact is the vocabulary as JSON and the
numbers (idf, weights, intercepts) as safetensors: nothing is pickled.

scikit-learn is imported inside ``fit``, never at module level: every slmbench command imports
this module, and installing the plugin must not slow them down.
"""

from __future__ import annotations

import json
from typing import Sequence

from slmbench import Examples, Family, Predictions, Strategy, hookimpl

VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True}
"""TfidfVectorizer settings: word unigrams and bigrams, tf replaced by 1 + log(tf)."""
C_GRID = (0.1, 1.0, 10.0)
"""Candidate SVM regularisation strengths; ties go to the smaller (more regularised) C."""


class TfidfSvm(Strategy):
    name = "tfidf-svm"
    description = "TF-IDF word 1-2 grams (sublinear tf) + linear SVM (scikit-learn)"
    family = Family.FEATURE

    def fit(self, train: Examples, validation: Examples) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        self.vectorizer = TfidfVectorizer(**VECTORIZER)
        train_x = self.vectorizer.fit_transform(train.texts)
        validation_x = self.vectorizer.transform(validation.texts)
        candidates, scores = {}, {}
        for c in self.context.progress.track(C_GRID, f"{self.name}: choosing C"):
            candidates[c] = LinearSVC(C=c, random_state=self.context.seed).fit(train_x, train.labels)
            scores[c] = candidates[c].score(validation_x, validation.labels)
        best_c = max(scores, key=scores.get)
        self.classifier = candidates[best_c]
        self._save()
        self.details = {
            "C": best_c,
            "validation_accuracy_by_C": {str(c): round(s, 4) for c, s in scores.items()},
            "vocabulary_size": len(self.vectorizer.vocabulary_),
        }

    def _save(self) -> None:
        """Write ``vocabulary.json`` (terms in feature order) and ``weights.safetensors``."""
        from safetensors.numpy import save_file  # installed with slmbench

        directory = self.context.artifact_dir
        terms = self.vectorizer.get_feature_names_out().tolist()
        (directory / "vocabulary.json").write_text(json.dumps({**VECTORIZER, "terms": terms}), encoding="utf-8")
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
        return Predictions(labels=self.classifier.predict(self.vectorizer.transform(texts)).tolist())

    def parameter_counts(self) -> tuple[int, int]:
        weights = self.classifier.coef_.size + self.classifier.intercept_.size
        return weights, weights


@hookimpl
def register_strategies(register):
    register(TfidfSvm)
