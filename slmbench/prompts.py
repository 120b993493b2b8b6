"""Chat prompts for classifying with a causal LM: instruction, allowed answers, demonstrations, text.

Every text that enters a prompt (query or demonstration) is cut to the budget's ``max_input_tokens``
here, explicitly and by tokens, so no strategy relies on silent truncation elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
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


def classify_with_lm(
    context: RunContext,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    demonstrations: Sequence[Sequence[tuple[str, int]]] | None = None,
) -> tuple[Predictions, dict[str, Any]]:
    """Classify ``texts`` with the scoring engine, one prompt each (``demonstrations[i]`` for text i).

    Returns the predictions and the prompt figures every LM strategy puts in its trial details.
    """
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
    details = {
        "prompt_tokens_per_example": round(sum(scores.prompt_tokens) / max(len(texts), 1), 1),
        "max_prompt_tokens": max(scores.prompt_tokens, default=0),
        "shared_prefix_tokens": scores.shared_prefix_tokens,
        "compute_dtype": scores.compute_dtype,
    }
    return Predictions(labels=scores.labels, probabilities=scores.probabilities), details
