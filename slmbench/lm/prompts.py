"""Chat prompts for classifying with a causal LM: instruction, allowed answers, demonstrations, text.

Every text that enters a prompt (query or demonstration) is cut to the budget's ``max_input_tokens``
here, explicitly and by tokens, so no strategy relies on silent truncation elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, get_args

from pydantic import Field

from slmbench.common.options import Options
from slmbench.records import Calibration, CalibrationMethod

if TYPE_CHECKING:
    import numpy as np

    from slmbench.tasks.spec import TaskSpec


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
            f"- {label.verbalizer}: {label.description}" if label.description else f"- {label.verbalizer}" for label in task.labels
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
    for every query so that the prompts share a token prefix (see ``slmbench.lm.scoring``).
    """
    messages = [{"role": "system", "content": system_prompt(task)}]
    for demo_text, label in demonstrations:
        messages.append({"role": "user", "content": truncate_text(tokenizer, demo_text, max_input_tokens)})
        messages.append({"role": "assistant", "content": task.labels[label].verbalizer})
    messages.append({"role": "user", "content": truncate_text(tokenizer, text, max_input_tokens)})
    return messages


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


def calibrated(probabilities: np.ndarray, calibration: Calibration) -> np.ndarray:
    """``probabilities`` (texts x labels) with the LM's answer bias divided out and the prior put in its place."""
    import numpy as np

    corrected = np.asarray(probabilities, dtype=float)
    if calibration.bias is not None:
        corrected = corrected / np.maximum(np.asarray(calibration.bias), 1e-12)
    if calibration.prior is not None:
        corrected = corrected * np.asarray(calibration.prior)
    return corrected / corrected.sum(axis=1, keepdims=True)


def label_frequencies(labels: Sequence[int], n_labels: int) -> tuple[float, ...]:
    """Share of each label among ``labels`` (add-one smoothed, so no label is ruled out)."""
    counts = [1 + sum(1 for label in labels if label == i) for i in range(n_labels)]
    return tuple(count / sum(counts) for count in counts)


def verbalizer_warnings(task: TaskSpec, tokenizer: Any) -> list[str]:
    """Verbalizers the causal LM may score poorly: not one word of its vocabulary (split into several tokens,
    with or without a leading space). Each warning suggests a common word or the label's description."""
    warnings = []
    for label in task.labels:
        split = [len(tokenizer(form, add_special_tokens=False)["input_ids"]) for form in (label.verbalizer, " " + label.verbalizer)]
        if min(split) <= 1:
            continue
        hint = (
            f"its description ({label.description!r}) is in the prompt: a common word from it may answer better"
            if label.description
            else "add a description to the label (the prompt shows it) or use a more common word"
        )
        warnings.append(
            f"label {label.name!r}: verbalizer {label.verbalizer!r} is {split[0]} tokens for this model, not one word of its "
            f"vocabulary, so its score rests on how the model spells it; {hint}"
        )
    return warnings
