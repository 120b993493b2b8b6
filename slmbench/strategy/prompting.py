"""Classify with the shared causal LM from inside a strategy: calibration estimated on the run's
unlabelled train texts, then each label's answer scored by the scoring engine; what a prompting
strategy learnt saved as JSON (``save_prompt``, ``load_prompt``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.lm.prompts import CALIBRATIONS, CONTENT_FREE_TEXTS, build_messages, calibrated
from slmbench.records import Calibration, CalibrationMethod
from slmbench.tasks.examples import Predictions

if TYPE_CHECKING:
    from slmbench.strategy.base import RunContext


PROMPT_FILE = "prompt.json"


def save_prompt(directory: Path, calibration: Calibration | None, **parts: Any) -> None:
    """Write ``prompt.json``: the calibration at full precision (a trial record rounds it) and ``parts``
    (demonstrations, the demonstration plan...), plain JSON."""
    saved = {"calibration": None if calibration is None else dict(calibration), **parts}
    (directory / PROMPT_FILE).write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")


def load_prompt(directory: Path) -> tuple[Calibration | None, dict[str, Any]]:
    """The calibration and the other parts ``save_prompt`` wrote."""
    saved = json.loads((directory / PROMPT_FILE).read_text(encoding="utf-8"))
    calibration = saved.pop("calibration")
    return (None if calibration is None else Calibration.model_validate(calibration)), saved


@dataclass
class LMClassification:
    """What ``classify_with_lm`` returns: the predictions and the prompt figures for the trial record."""

    predictions: Predictions
    prompt_tokens_per_example: float
    details: dict[str, Any]


def estimate_calibration(
    context: RunContext,
    model: Any,
    tokenizer: Any,
    method: CalibrationMethod,
    unlabelled: Sequence[str],
    *,
    sample: int,
    prior: tuple[float, ...] | None = None,
    demonstrations_for: Callable[[Sequence[str]], Sequence[Sequence[tuple[str, int]]]] | None = None,
) -> Calibration:
    """Measure the LM's answer bias with ``method`` (see ``Calibration``) on the prompts the strategy
    builds: ``sample`` texts drawn with the run's seed from ``unlabelled`` (``batch``) or the
    content-free inputs, with the demonstrations ``demonstrations_for`` gives them."""
    import random

    if method not in CALIBRATIONS:
        raise ValueError(f"calibration {method!r}: expected one of {', '.join(CALIBRATIONS)}")
    if method == "none":
        return Calibration(method="none", prior=prior)
    if method == "content-free":
        texts = list(CONTENT_FREE_TEXTS)
    else:
        texts = random.Random(context.seed).sample(list(unlabelled), min(sample, len(unlabelled)))
    demonstrations = demonstrations_for(texts) if demonstrations_for else None
    scored = classify_with_lm(context, model, tokenizer, texts, demonstrations)
    probabilities = scored.predictions.probabilities
    assert probabilities is not None  # classify_with_lm always gives them
    bias = probabilities.mean(axis=0)
    return Calibration(method=method, bias=tuple(float(b) for b in bias), prior=prior)


def classify_with_lm(
    context: RunContext,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    demonstrations: Sequence[Sequence[tuple[str, int]]] | None = None,
    calibration: Calibration | None = None,
) -> LMClassification:
    """Classify ``texts`` with the scoring engine, one prompt each (``demonstrations[i]`` for text i),
    the probabilities corrected by ``calibration`` when given."""
    from slmbench.lm.batch_sizes import inference_batch_size
    from slmbench.lm.scoring import score_choices
    from slmbench.tasks.examples import Predictions

    task, budget = context.task, context.budget
    conversations = [
        build_messages(task, text, tokenizer=tokenizer, max_input_tokens=budget.max_input_tokens, demonstrations=demos)
        for text, demos in zip(texts, demonstrations or [()] * len(texts), strict=True)
    ]
    scores = score_choices(
        model,
        tokenizer,
        conversations,
        [label.verbalizer for label in task.labels],
        batch_size=inference_batch_size(budget.batch_size, context.device),
        progress=context.progress,
        prompt_format=context.models.prompt_format,
    )
    probabilities = scores.probabilities if calibration is None else calibrated(scores.probabilities, calibration)
    details = {
        "max_prompt_tokens": max(scores.prompt_tokens, default=0),
        "shared_prefix_tokens": scores.shared_prefix_tokens,
        "compute_dtype": scores.compute_dtype,
    }
    return LMClassification(
        Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities),
        round(sum(scores.prompt_tokens) / max(len(texts), 1), 1),
        details,
    )
