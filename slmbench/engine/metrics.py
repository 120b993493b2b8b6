"""Classification metrics of one trial, computed identically for every strategy."""

from __future__ import annotations

from collections.abc import Sequence


def classification_metrics(gold: Sequence[int], predicted: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Rows of the confusion matrix are gold labels, columns predicted labels, both in task order.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    indices = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=indices, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=indices, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(gold, predicted, labels=indices).tolist(),
    }
