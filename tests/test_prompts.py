"""Chat prompts: instruction and allowed answers, demonstrations as turns, token-based truncation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slmbench.lm.prompts import build_messages, system_prompt, truncate_text


def test_truncate_text_keeps_short_texts_and_cuts_long_ones_by_tokens(smollm2_tokenizer):
    text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007."
    n_tokens = len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert truncate_text(smollm2_tokenizer, text, n_tokens) == text
    cut = truncate_text(smollm2_tokenizer, text, 5)
    assert text.startswith(cut) and len(cut) < len(text)
    assert len(smollm2_tokenizer(cut, add_special_tokens=False)["input_ids"]) == 5
    assert truncate_text(smollm2_tokenizer, text, 0) == ""


@pytest.mark.parametrize("descriptions", [False, True])
def test_system_prompt_lists_every_verbalizer(toy_task, descriptions):
    if descriptions:
        negative, neutral, positive = toy_task.labels
        labels = (replace(negative, description="bad news"), neutral, replace(positive, description="good news"))
        toy_task = replace(toy_task, labels=labels)
    prompt = system_prompt(toy_task)
    assert prompt.startswith("Classify the sentiment of the sentence.")
    assert all(word in prompt for word in ("negative", "neutral", "positive"))
    assert ("- negative: bad news" in prompt) == descriptions


def test_build_messages_puts_demonstrations_before_the_truncated_query(smollm2_tokenizer, toy_task):
    task = toy_task
    long_text = "Sales increased " * 50
    messages = build_messages(
        task,
        long_text,
        tokenizer=smollm2_tokenizer,
        max_input_tokens=8,
        demonstrations=[("Profit fell.", 0), (long_text, 2)],
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == system_prompt(task)
    assert messages[1]["content"] == "Profit fell." and messages[2]["content"] == "negative"
    assert messages[4]["content"] == "positive"
    for truncated in (messages[3]["content"], messages[5]["content"]):
        assert len(smollm2_tokenizer(truncated, add_special_tokens=False)["input_ids"]) == 8


def test_build_messages_without_demonstrations_is_system_then_user(smollm2_tokenizer, toy_task):
    messages = build_messages(toy_task, "Shares rose.", tokenizer=smollm2_tokenizer, max_input_tokens=64)
    assert messages == [
        {"role": "system", "content": system_prompt(toy_task)},
        {"role": "user", "content": "Shares rose."},
    ]
