"""Profiles: the budget every strategy of a run shares, so that comparisons stay fair (``Budget``, a record)."""

from __future__ import annotations

from slmbench.records import Budget

__all__ = ["PROFILES", "Budget", "get_profile"]

PROFILES: dict[str, Budget] = {
    # Tiny: exists so tests can run every strategy end to end in seconds.
    "smoke": Budget(
        name="smoke",
        max_train_examples=40,
        max_validation_examples=15,
        max_test_examples=15,
        max_input_tokens=64,
        max_train_steps=2,
        batch_size=4,
        eval_every_steps=1,
        latency_requests=3,
    ),
    # Default: meaningful numbers on a 2-core CPU in minutes.
    # Fine-tuning strategies get equal compute (steps and tokens), not equal examples: on a CPU a pass over
    # long texts would take hours. Every strategy may try 3 option settings.
    "quick": Budget(
        name="quick",
        max_train_examples=1000,
        max_validation_examples=200,
        max_test_examples=200,
        max_input_tokens=256,
        max_train_steps=60,
        batch_size=8,
        eval_every_steps=15,
        early_stopping_patience=2,
        max_train_tokens=40_000,
        max_validation_tokens=16_000,
        tuning_trials=3,
        compute_parameters=106_168_320,  # SmolLM2-135M-Instruct's linear layers (the default causal LM): its caps as they stand
    ),
    # Everything: meant for a GPU. Fine-tuning strategies see the same examples (3 epochs, early stopping).
    "full": Budget(
        name="full",
        max_train_examples=None,
        max_validation_examples=None,
        max_test_examples=None,
        max_input_tokens=512,
        max_train_steps=None,
        batch_size=16,
        eval_every_steps=50,
        early_stopping_patience=5,
        tuning_trials=8,
    ),
}


def get_profile(name: str) -> Budget:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
