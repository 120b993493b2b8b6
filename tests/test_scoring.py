"""The scoring engine against a naive reference: one full forward pass per (prompt, choice), no cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmbench.lm.scoring import score_choices

SYSTEM = {"role": "system", "content": "Classify the news article. Answer with one of the topics."}
DEMOS = [
    {"role": "user", "content": "The striker scored twice in the final."},
    {"role": "assistant", "content": "sport"},
]
TEXTS = [
    "Parliament voted on the budget.",
    "The new phone ships with a faster chip and a brighter screen than last year's model.",
    "Box office takings rose.",
    "Shares of the bank fell 3% after the quarterly results disappointed analysts.",
    "A short one.",
]
# One-token and multi-token answers, and "sport" is a prefix of "sports".
CHOICES = ["business", "entertainment", "politics", "sport", "sports", "tech"]


def conversations(texts=TEXTS):
    return [[SYSTEM, *DEMOS, {"role": "user", "content": text}] for text in texts]


def sequence_log_likelihood(model, ids: list[int], n_prompt: int) -> torch.Tensor:
    """Sum of log P(token) over ``ids[n_prompt:]``, the whole sequence run alone from scratch (no cache, no batch)."""
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    token_log_probs = log_probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    return token_log_probs[n_prompt - 1 :].sum()


def naive_log_likelihoods(model, tokenizer, convs, choices) -> torch.Tensor:
    """Sum of log P(answer token) with the whole prompt + answer + end of turn run from scratch, tokenized jointly."""
    rows = []
    for conv in convs:
        prompt = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = [tokenizer(prompt + choice + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for choice in choices]
        rows.append(torch.stack([sequence_log_likelihood(model, choice_ids, n_prompt) for choice_ids in ids]))
    return torch.stack(rows)


def naive_probabilities(model, tokenizer, convs, choices) -> np.ndarray:
    return torch.softmax(naive_log_likelihoods(model, tokenizer, convs, choices).double(), dim=1).numpy()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_prefix_reuse_and_batching_match_the_naive_computation(make_tiny_causal_lm, smollm2_tokenizer, attn_implementation):
    model, tokenizer = make_tiny_causal_lm(attn_implementation), smollm2_tokenizer
    expected = naive_probabilities(model, tokenizer, conversations(), CHOICES)
    assert expected.max(axis=1).min() > 0.3, "random weights too flat for the comparison to mean much"
    for batch_size in (1, 2, 8):
        scores = score_choices(model, tokenizer, conversations(), CHOICES, batch_size=batch_size, bfloat16=False)
        assert scores.probabilities.shape == (len(TEXTS), len(CHOICES))
        np.testing.assert_allclose(scores.probabilities, expected, atol=1e-5)
        assert scores.labels == expected.argmax(axis=1).tolist()
        assert scores.compute_dtype == "float32"


def test_shared_prefix_covers_system_prompt_and_demonstrations(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    scores = score_choices(model, tokenizer, conversations(), CHOICES, bfloat16=False)
    fixed = tokenizer.apply_chat_template([SYSTEM, *DEMOS], tokenize=False)
    assert scores.shared_prefix_tokens >= len(tokenizer(fixed, add_special_tokens=False)["input_ids"])
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations()]
    assert scores.prompt_tokens == [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def test_prefix_runs_once_and_each_prompt_once_for_all_choices(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    shapes: list[tuple[int, ...]] = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        scores = score_choices(model, tokenizer, conversations(), CHOICES, batch_size=2, bfloat16=False)
    finally:
        hook.remove()
    prefix = scores.shared_prefix_tokens
    branch_tokens = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in CHOICES)  # + eos - last
    suffixes = sorted(n - prefix for n in scores.prompt_tokens)
    batches = [suffixes[i : i + 2] for i in range(0, len(suffixes), 2)]
    # The prefix once, then one row per prompt (padded to its batch's longest) holding every choice.
    assert shapes == [(1, prefix)] + [(len(b), max(b) + branch_tokens) for b in batches]


def test_identical_and_single_prompts(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    same = conversations([TEXTS[0]] * 3)
    scores = score_choices(model, tokenizer, same, CHOICES, bfloat16=False)
    assert scores.shared_prefix_tokens == scores.prompt_tokens[0] - 1
    np.testing.assert_allclose(scores.probabilities, naive_probabilities(model, tokenizer, same, CHOICES), atol=1e-5)
    single = score_choices(model, tokenizer, same[:1], CHOICES, bfloat16=False)
    np.testing.assert_allclose(single.probabilities, scores.probabilities[:1], atol=1e-6)


def test_rejects_no_choices_and_a_model_in_training_mode(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    with pytest.raises(ValueError, match="at least one choice"):
        score_choices(model, tokenizer, conversations(), [])
    model.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            score_choices(model, tokenizer, conversations(), CHOICES)
    finally:
        model.eval()


def test_no_conversations_gives_empty_scores(tiny_causal_lm):
    scores = score_choices(*tiny_causal_lm, [], CHOICES)
    assert scores.labels == [] and scores.probabilities.shape == (0, len(CHOICES))


def test_bfloat16_autocast_stays_close_to_fp32_and_leaves_the_model_untouched(tiny_causal_lm):
    model, tokenizer = tiny_causal_lm
    fp32 = score_choices(model, tokenizer, conversations(), CHOICES, bfloat16=False)
    bf16 = score_choices(model, tokenizer, conversations(), CHOICES, bfloat16=True)
    assert bf16.compute_dtype == "bfloat16"
    np.testing.assert_allclose(bf16.probabilities, fp32.probabilities, atol=0.02)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not model.get_output_embeddings()._forward_hooks


@pytest.mark.integration
@pytest.mark.real_data
def test_real_model_on_financial_sentences_matches_naive(shared_data_dir):
    """SmolLM2-135M-Instruct on 10 financial sentences: fp32 engine = naive, bf16 agrees on the labels."""
    import csv

    from slmbench.lm.models import SharedModels

    with (shared_data_dir / "financial_phrasebank.csv").open(newline="") as f:
        texts = [row["text"] for _, row in zip(range(10), csv.DictReader(f))]
    model, tokenizer = SharedModels().causal_lm()
    system = {"role": "system", "content": "Classify the sentiment of this financial news sentence."}
    convs = [[system, {"role": "user", "content": text}] for text in texts]
    choices = ["negative", "neutral", "positive"]
    fp32 = score_choices(model, tokenizer, convs, choices, bfloat16=False)
    np.testing.assert_allclose(fp32.probabilities, naive_probabilities(model, tokenizer, convs, choices), atol=1e-4)
    bf16 = score_choices(model, tokenizer, convs, choices, bfloat16=True)
    assert sum(a == b for a, b in zip(fp32.labels, bf16.labels)) >= 9
