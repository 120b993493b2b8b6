"""ensemble: the run's other strategies stacked by a logistic regression learnt on the validation split.

Every other strategy of the run (same seed, same train size) predicts the validation and test
splits; their probabilities (one-hot labels for strategies without probabilities), side by side,
are the features of a multinomial logistic regression fitted on the validation split, whose
regularisation is chosen by cross-validated log-loss on that split (scikit-learn's ``LogisticRegressionCV``):
it learns which strategy to trust for which label. It is scored on test like any other strategy. A
validation split too small to cross-validate (a label with one example) gets a fixed regularisation,
and one with a single label the members' mean; ``details["combiner"]`` says which.

Its cost is honest: deploying it means training and running every member, so the trial adds the
members' training time, prediction time, memory, parameters and artifacts to its own.

It saves the combiner (skops) and its members' names; reloaded (``slmbench predict``), it runs its
reloaded members on the new texts, their probabilities rounded as their trials recorded them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from slmbench.strategy import CombiningStrategy, Examples, Family, Options, Predictions, StrategyMetadata, hookimpl

COMBINER_FILE = "combiner.skops"
MEMBERS_FILE = "ensemble.json"
CROSS_VALIDATION = "sklearn.model_selection._split.StratifiedKFold"
"""The one type skops does not trust by default in the combiner: the folds that chose its C."""


class EnsembleOptions(Options):
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds on the validation split that choose the regularisation")
    min_members: int = Field(2, ge=2, description="fewest finished strategies worth combining")


class Ensemble(CombiningStrategy):
    metadata = StrategyMetadata(
        name="ensemble",
        description="Stacks the other strategies' probabilities with a logistic regression fitted on validation",
        family=Family.ENSEMBLE,
    )

    Options = EnsembleOptions
    options: EnsembleOptions

    def _features(self, texts: Sequence[str]):
        import numpy as np

        return np.hstack([member.rows(texts) for member in self.members])

    def fit(self, train: Examples, validation: Examples) -> None:
        members = self.members
        if len(members) < self.options.min_members:
            raise ValueError(
                f"the run has {len(members)} finished strategies to combine, fewer than min_members={self.options.min_members}"
            )
        self.combiner = self._fitted_combiner(self._features(validation.texts), validation.labels)
        self.details = {"members": [member.name for member in members], "combiner": self.combined_by}
        if self.combiner is not None:
            weights = abs(self.combiner.coef_).reshape(len(self.combiner.classes_), len(members), -1).sum(axis=(0, 2))
            self.details["weight_share"] = {member.name: round(float(w / weights.sum()), 4) for member, w in zip(members, weights)}
        self.train_examples_seen = 0

    def save(self, directory: Path) -> None:
        """The combiner in skops' format (``combiner.skops``; none when it takes the members' mean) and
        the members in their order (``ensemble.json``); the members' own trials keep their artifacts."""
        import skops.io

        if self.combiner is not None:
            skops.io.dump(self.combiner, directory / COMBINER_FILE)
        saved = {
            "members": [member.name for member in self.members],
            "combined_by": self.combined_by,
            "combiner": self.combiner is not None,
        }
        (directory / MEMBERS_FILE).write_text(json.dumps(saved), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """The combiner back; ``self.members`` are the reloaded members, which must be those it was fitted on."""
        import skops.io

        saved = json.loads((directory / MEMBERS_FILE).read_text(encoding="utf-8"))
        if saved["members"] != [member.name for member in self.members]:
            raise ValueError(f"the ensemble combined {saved['members']}, not {[member.name for member in self.members]}")
        self.combined_by = saved["combined_by"]
        self.combiner = skops.io.load(directory / COMBINER_FILE, trusted=[CROSS_VALIDATION]) if saved["combiner"] else None

    def _fitted_combiner(self, features, labels: list[int]):
        """The logistic regression, its C chosen by stratified cross-validation; on a validation split too
        small for that, degraded to what it allows (``self.combined_by`` says which): a fixed C when a
        label has a single example, the members' mean when the split holds one label only."""
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        counts = [labels.count(label) for label in set(labels)]
        if len(counts) < 2:
            self.combined_by = "the members' mean probabilities: the validation split holds a single label, nothing to fit"
            return None
        if min(counts) < 2:
            self.combined_by = "a logistic regression with C = 1: a label has one validation example, too few to cross-validate C"
            return LogisticRegression(C=1.0, max_iter=5000, random_state=self.context.seed).fit(features, labels)
        folds = StratifiedKFold(min(self.options.folds, min(counts)), shuffle=True, random_state=self.context.seed)
        combiner = LogisticRegressionCV(
            Cs=10,
            cv=folds,
            scoring="neg_log_loss",
            l1_ratios=(0.0,),
            max_iter=5000,
            random_state=self.context.seed,
            use_legacy_attributes=False,
        ).fit(features, labels)
        self.combined_by = f"a logistic regression, C = {float(combiner.C_):.4g} chosen by {folds.n_splits}-fold cross-validation"
        return combiner

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        features = self._features(texts)
        n_labels = len(self.context.task.labels)
        if self.combiner is None:
            probabilities = features.reshape(len(texts), len(self.members), n_labels).mean(axis=1)
        else:
            probabilities = np.zeros((len(texts), n_labels))
            probabilities[:, self.combiner.classes_] = self.combiner.predict_proba(features)
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        weights = 0 if self.combiner is None else self.combiner.coef_.size + self.combiner.intercept_.size
        return weights, weights


@hookimpl
def register_strategies(register) -> None:
    register(Ensemble)
