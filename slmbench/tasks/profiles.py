"""Profiles: the budget every strategy of a run shares, so that comparisons stay fair."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budget:
    """Caps applied identically to every strategy of a run (``None`` means no cap)."""

    name: str
    max_train_examples: int | None
    max_validation_examples: int | None
    max_test_examples: int | None
    max_input_tokens: int
    """Texts are truncated to this many tokens before they enter a language-model prompt."""
    max_train_steps: int | None
    """Optimizer steps for weight-updating strategies. With a cap (and ``max_train_tokens``) every
    fine-tuning strategy gets the same training *compute*; without one, each trains ``train_epochs``
    passes over the train split (early stopping aside): the same *examples*."""
    batch_size: int
    eval_every_steps: int | None = None
    """Weight-updating strategies measure the validation loss every this many optimizer steps (and
    before the first and after the last); ``None`` means once per epoch. It picks the checkpoint kept."""
    early_stopping_patience: int | None = None
    """Stop training after this many validation measurements without improvement (``None``: never)."""
    max_train_tokens: int | None = None
    """Compute cap of weight-updating strategies, with ``max_train_steps`` (the lower wins): tokens
    run through the model in training (a prompt prefix shared by a batch counts once). Long texts
    get fewer steps than short ones for the same cost."""
    max_validation_tokens: int | None = None
    """The validation loss is measured on the first validation examples up to this many tokens."""
    train_epochs: float = 3.0
    """Passes over the train split when ``max_train_steps`` is None."""
    tuning_trials: int = 1
    """Option settings every strategy may try, chosen on validation accuracy (``slmbench.engine.tuning``); 1: defaults only."""
    latency_requests: int = 20
    """Test texts predicted one at a time for the single-request latency (p50, p95)."""

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Budget] = {
    # Tiny: exists so tests can run every strategy end to end in seconds.
    "smoke": Budget("smoke", 40, 15, 15, 64, 2, 4, eval_every_steps=1, latency_requests=3),
    # Default: meaningful numbers on a 2-core CPU in minutes.
    # Fine-tuning strategies get equal compute (steps and tokens), not equal examples: on a CPU a pass over
    # long texts would take hours. Every strategy may try 3 option settings.
    "quick": Budget(
        "quick",
        1000,
        200,
        200,
        256,
        60,
        8,
        eval_every_steps=15,
        early_stopping_patience=2,
        max_train_tokens=40_000,
        max_validation_tokens=16_000,
        tuning_trials=3,
    ),
    # Everything: meant for a GPU. Fine-tuning strategies see the same examples (3 epochs, early stopping).
    "full": Budget("full", None, None, None, 512, None, 16, eval_every_steps=50, early_stopping_patience=5, tuning_trials=8),
}


def get_profile(name: str) -> Budget:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
