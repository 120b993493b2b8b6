"""ensemble: the run's other strategies stacked by a logistic regression learnt on the validation split.

Every other strategy of the run (same seed, same train size) predicts the validation and test
splits; their probabilities (one-hot labels for strategies without probabilities), side by side,
are the features of a multinomial logistic regression fitted on the validation split, whose
regularisation is chosen by cross-validated log-loss on that split (scikit-learn's ``LogisticRegressionCV``):
it learns which strategy to trust for which label. It is scored on test like any other strategy.

Its cost is honest: deploying it means training and running every member, so the trial adds the
members' training time, prediction time, memory, parameters and artifacts to its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from slmbench.common.options import Options
from slmbench.strategy.base import Family, Strategy
from slmbench.strategy.hookspecs import hookimpl
from slmbench.tasks.examples import Examples, Predictions


class EnsembleOptions(Options):
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds on the validation split that choose the regularisation")
    min_members: int = Field(2, ge=2, description="fewest finished strategies worth combining")


class Ensemble(Strategy):
    name = "ensemble"
    description = "Stacks the other strategies' probabilities with a logistic regression fitted on validation"
    family = Family.ENSEMBLE
    combines_others = True

    Options = EnsembleOptions
    options: EnsembleOptions

    def _features(self, texts: Sequence[str]):
        import numpy as np

        return np.hstack([member.rows(texts) for member in self.context.members])

    def fit(self, train: Examples, validation: Examples) -> None:
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        members = self.context.members
        if len(members) < self.options.min_members:
            raise ValueError(
                f"the run has {len(members)} finished strategies to combine, fewer than min_members={self.options.min_members}"
            )
        smallest = min(validation.labels.count(label) for label in set(validation.labels))
        folds = StratifiedKFold(min(self.options.folds, max(2, smallest)), shuffle=True, random_state=self.context.seed)
        self.combiner = LogisticRegressionCV(
            Cs=10,
            cv=folds,
            scoring="neg_log_loss",
            l1_ratios=(0.0,),
            max_iter=5000,
            random_state=self.context.seed,
            use_legacy_attributes=False,
        )
        self.combiner.fit(self._features(validation.texts), validation.labels)
        weights = abs(self.combiner.coef_).reshape(len(self.combiner.classes_), len(members), -1).sum(axis=(0, 2))
        self.details = {
            "members": [member.name for member in members],
            "C": float(self.combiner.C_),
            "weight_share": {member.name: round(float(w / weights.sum()), 4) for member, w in zip(members, weights)},
        }
        self.train_examples_seen = 0

    def predict(self, texts: Sequence[str]) -> Predictions:
        import numpy as np

        probabilities = np.zeros((len(texts), len(self.context.task.labels)))
        probabilities[:, self.combiner.classes_] = self.combiner.predict_proba(self._features(texts))
        return Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities)

    def parameter_counts(self) -> tuple[int, int]:
        weights = self.combiner.coef_.size + self.combiner.intercept_.size
        return weights, weights


@hookimpl
def register_strategies(register) -> None:
    register(Ensemble)
