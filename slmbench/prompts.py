"""Chat prompts for classifying with a causal LM: instruction, allowed answers, demonstrations, text.

Every text that enters a prompt (query or demonstration) is cut to the budget's ``max_input_tokens``
here, explicitly and by tokens, so no strategy relies on silent truncation elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence, get_args

from pydantic import Field

from slmbench.options import Options

if TYPE_CHECKING:
    import numpy as np

    from slmbench.strategy import Predictions, RunContext
    from slmbench.tasks import TaskSpec


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """``text`` cut after its first ``max_tokens`` tokens (unchanged if it is short enough)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens - 1][1]] if max_tokens > 0 else ""


def system_prompt(task: TaskSpec) -> str:
    """The task instruction followed by the allowed answers (with their descriptions when given)."""
    if any(label.description for label in task.labels):
        answers = "\n".join(
            f"- {label.verbalizer}: {label.description}" if label.description else f"- {label.verbalizer}"
            for label in task.labels
        )
        return f"{task.instruction}\n\nAnswer with exactly one of these labels:\n{answers}"
    answers = ", ".join(label.verbalizer for label in task.labels)
    return f"{task.instruction}\n\nAnswer with exactly one of: {answers}."


def build_messages(
    task: TaskSpec,
    text: str,
    *,
    tokenizer: Any,
    max_input_tokens: int,
    demonstrations: Sequence[tuple[str, int]] = (),
) -> list[dict[str, str]]:
    """Chat messages: system prompt, demonstrations as (user text, assistant verbalizer) turns, then ``text``.

    ``demonstrations`` are (text, label index) pairs; they keep their order, which should be the same
    for every query so that the prompts share a token prefix (see ``slmbench.scoring``).
    """
    messages = [{"role": "system", "content": system_prompt(task)}]
    for demo_text, label in demonstrations:
        messages.append({"role": "user", "content": truncate_text(tokenizer, demo_text, max_input_tokens)})
        messages.append({"role": "assistant", "content": task.labels[label].verbalizer})
    messages.append({"role": "user", "content": truncate_text(tokenizer, text, max_input_tokens)})
    return messages


@dataclass
class LMClassification:
    """What ``classify_with_lm`` returns: the predictions and the prompt figures for the trial record."""

    predictions: Predictions
    prompt_tokens_per_example: float
    details: dict[str, Any]


CalibrationMethod = Literal["batch", "content-free", "none"]
CALIBRATIONS: tuple[str, ...] = get_args(CalibrationMethod)


class PromptOptions(Options):
    """Options of every strategy that prompts the shared LM (zero-shot, few-shot, rag)."""

    calibration: CalibrationMethod = Field(
        "batch",
        description="remove the LM's answer bias measured on unlabelled train texts (batch), on content-free "
        "inputs such as 'N/A' (content-free), or not at all (none)",
    )
    calibration_texts: int = Field(64, ge=1, le=4096, description="unlabelled train texts that measure the bias (batch)")


CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
"""Zhao et al. (2021), "Calibrate Before Use": inputs that carry no content, to read the LM's answer bias."""


@dataclass(frozen=True)
class Calibration:
    """Prior correction of an LM classifier: p(label | text) ∝ p_LM(label | text) / bias(label) * prior(label).

    ``bias`` is the LM's own preference among the answers whatever the text, estimated as its mean
    answer distribution over inputs (``batch``: unlabelled train texts, Zhou et al. 2023, "Batch
    Calibration"; ``content-free``: ``CONTENT_FREE_TEXTS``, Zhao et al. 2021); ``prior`` is the label
    distribution to restore (the train split's label frequencies for strategies that see labels;
    None: uniform). ``none`` leaves the probabilities as the LM gives them.
    """

    method: str
    bias: tuple[float, ...] | None = None
    prior: tuple[float, ...] | None = None

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        import numpy as np

        corrected = np.asarray(probabilities, dtype=float)
        if self.bias is not None:
            corrected = corrected / np.maximum(np.asarray(self.bias), 1e-12)
        if self.prior is not None:
            corrected = corrected * np.asarray(self.prior)
        return corrected / corrected.sum(axis=1, keepdims=True)

    def describe(self) -> dict[str, Any]:
        rounded = lambda values: None if values is None else [round(v, 4) for v in values]  # noqa: E731
        return {"method": self.method, "bias": rounded(self.bias), "prior": rounded(self.prior)}


def label_frequencies(labels: Sequence[int], n_labels: int) -> tuple[float, ...]:
    """Share of each label among ``labels`` (add-one smoothed, so no label is ruled out)."""
    counts = [1 + sum(1 for label in labels if label == i) for i in range(n_labels)]
    return tuple(count / sum(counts) for count in counts)


def estimate_calibration(
    context: RunContext,
    model: Any,
    tokenizer: Any,
    method: str,
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
        return Calibration("none", None, prior)
    if method == "content-free":
        texts = list(CONTENT_FREE_TEXTS)
    else:
        texts = random.Random(context.seed).sample(list(unlabelled), min(sample, len(unlabelled)))
    demonstrations = demonstrations_for(texts) if demonstrations_for else None
    scored = classify_with_lm(context, model, tokenizer, texts, demonstrations)
    bias = scored.predictions.probabilities.mean(axis=0)
    return Calibration(method, tuple(float(b) for b in bias), prior)


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
    from slmbench.scoring import score_choices
    from slmbench.strategy import Predictions

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
        batch_size=budget.batch_size,
        progress=context.progress,
    )
    probabilities = scores.probabilities if calibration is None else calibration.apply(scores.probabilities)
    details = {
        "max_prompt_tokens": max(scores.prompt_tokens, default=0),
        "shared_prefix_tokens": scores.shared_prefix_tokens,
        "compute_dtype": scores.compute_dtype,
        **({"calibration": calibration.describe()} if calibration is not None else {}),
    }
    return LMClassification(
        Predictions(labels=probabilities.argmax(axis=1).tolist(), probabilities=probabilities),
        round(sum(scores.prompt_tokens) / max(len(texts), 1), 1),
        details,
    )


def verbalizer_warnings(task: TaskSpec, tokenizer: Any) -> list[str]:
    """Verbalizers the causal LM may score poorly: not one word of its vocabulary (split into several tokens,
    with or without a leading space). Each warning suggests a common word or the label's description."""
    warnings = []
    for label in task.labels:
        split = [len(tokenizer(form, add_special_tokens=False)["input_ids"]) for form in (label.verbalizer, " " + label.verbalizer)]
        if min(split) <= 1:
            continue
        hint = (f"its description ({label.description!r}) is in the prompt: a common word from it may answer better"
                if label.description else "add a description to the label (the prompt shows it) or use a more common word")
        warnings.append(
            f"label {label.name!r}: verbalizer {label.verbalizer!r} is {split[0]} tokens for this model, not one word of its "
            f"vocabulary, so its score rests on how the model spells it; {hint}"
        )
    return warnings
