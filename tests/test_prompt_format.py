"""Prompt formats (``slmbench.lm.prompt_format``): chat through the model's template, completion for a base
model without one, and every LM strategy of a real run prompting in the format it resolves to."""

from __future__ import annotations

import numpy as np
import pytest
from cli_harness import run_cli
from conftest import run_toy_task
from test_scoring import sequence_log_likelihood

from slmbench.lm.prompt_format import PromptFormat, PromptFormatError, resolve_prompt_format
from slmbench.lm.scoring import score_choices
from slmbench.records import load_run_folder
from slmbench.testing import tiny_base_lm_folder, tiny_models, toy_task_files
from slmbench.testing.toys import CHAT_TEMPLATE, base_tokenizer, tiny_gemma3

SYSTEM = {"role": "system", "content": "Is this sentence good, bad or neutral news for the company?"}
DEMOS = [{"role": "user", "content": "Shares rose on record profit."}, {"role": "assistant", "content": "positive"}]
TEXTS = ["Shares fell after the loss.", "The board held a meeting on tuesday in its office.", "Strong growth."]
CHOICES = ["negative", "neutral", "positive", "pos"]  # "pos" starts "positive": the end of the answer tells them apart


def conversations(texts=TEXTS):
    return [[SYSTEM, *DEMOS, {"role": "user", "content": text}] for text in texts]


@pytest.fixture(scope="module")
def chat_tokenizer():
    """The tiny Llama's tokenizer: its chat template ends a turn with ``<|im_end|>``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models()[0])


@pytest.fixture(scope="module")
def base_model():
    """(tiny Gemma 3, its tokenizer without a chat template)."""
    tokenizer = base_tokenizer()
    return tiny_gemma3(tokenizer), tokenizer


# --- rendering -----------------------------------------------------------------------------------


def test_auto_is_chat_with_a_template_and_completion_without(chat_tokenizer, base_model):
    assert resolve_prompt_format(chat_tokenizer) == "chat"
    assert resolve_prompt_format(base_model[1]) == "completion"
    assert resolve_prompt_format(chat_tokenizer, "completion") == "completion"
    with pytest.raises(PromptFormatError, match="--prompt-format chat: tiny-base has no chat template"):
        resolve_prompt_format(base_model[1], "chat", "tiny-base")


def test_completion_prompt_starts_with_bos_and_its_answers_are_what_the_demonstrations_show(base_model):
    _, tokenizer = base_model
    rendering = PromptFormat.of(tokenizer)
    [prompt] = rendering.prompts(conversations(TEXTS[:1]))
    assert prompt[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in prompt[1:]
    assert prompt[-1] != tokenizer.eos_token_id and tokenizer.eos_token_id not in prompt
    assert tokenizer.decode(prompt[1:]) == (
        f"{SYSTEM['content']}\n\nText: {DEMOS[0]['content']}\nAnswer: positive\n\nText: {TEXTS[0]}\nAnswer:"
    )
    # The demonstration's answer, as tokenized inside the prompt, is the scored answer: space, verbalizer, end of the answer.
    answer = rendering.answer("positive")
    assert any(prompt[i : i + len(answer)] == answer for i in range(len(prompt)))
    pieces, pos = tokenizer.convert_ids_to_tokens(answer), rendering.answer("pos")
    assert pieces[0].startswith("▁") and pieces[-1] == "\n\n" and tokenizer.decode(answer) == "positive\n\n"
    assert pos[-1] == answer[-1] and answer[: len(pos)] != pos  # "pos" is no prefix of "positive" once ended


def test_chat_answer_ends_with_the_end_of_turn_the_template_writes(chat_tokenizer):
    end_of_turn = chat_tokenizer.convert_tokens_to_ids("<|im_end|>")
    positive = chat_tokenizer("positive", add_special_tokens=False)["input_ids"]
    assert PromptFormat.of(chat_tokenizer).answer("positive") == [*positive, end_of_turn]
    # A template ending turns with another token than EOS (as Phi-3.5's <|end|>, Llama 3's <|eot_id|>): that token.
    other = chat_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert other != chat_tokenizer.eos_token_id
    chat_tokenizer.chat_template = CHAT_TEMPLATE.replace("<|im_end|>", "<|endoftext|>")
    try:
        assert PromptFormat.of(chat_tokenizer).answer("positive")[-1] == other
        chat_tokenizer.chat_template = CHAT_TEMPLATE.replace("'<|im_end|>\n'", "''")  # nothing after the answer: EOS
        assert PromptFormat.of(chat_tokenizer).answer("positive")[-1] == chat_tokenizer.eos_token_id
    finally:
        chat_tokenizer.chat_template = CHAT_TEMPLATE


@pytest.mark.parametrize("window", [512, 8])
def test_scoring_a_base_model_matches_one_prompt_and_answer_at_a_time(base_model, window):
    """On the tiny Gemma 3 in the completion format, batched rows after the cached shared prefix give the
    log-likelihoods of each prompt + answer run alone; also where the prompts, and the shared prefix, are
    longer than the sliding layer's window (8 tokens)."""
    model, tokenizer = base_model
    model = tiny_gemma3(tokenizer, sliding_window=window) if window != 512 else model
    rendering = PromptFormat.of(tokenizer)
    prompts, answers = rendering.prompts(conversations()), [rendering.answer(choice) for choice in CHOICES]
    expected = np.array([[float(sequence_log_likelihood(model, p + a, len(p))) for a in answers] for p in prompts])
    assert np.ptp(expected, axis=1).min() > 0.1, "random weights too flat for the comparison to mean much"
    for batch_size in (1, 2, 8):
        scores = score_choices(model, tokenizer, conversations(), CHOICES, batch_size=batch_size, bfloat16=False)
        assert scores.shared_prefix_tokens > len(tokenizer(SYSTEM["content"])["input_ids"])
        np.testing.assert_allclose(scores.log_likelihoods, expected, atol=1e-4)
        assert scores.prompt_tokens == [len(p) for p in prompts]


# --- runs ----------------------------------------------------------------------------------------


def test_a_base_model_runs_zero_shot_few_shot_and_lora_in_the_completion_format(tmp_path):
    """Each trial, then each reloaded from its export (lora's trained model as a transformers folder too),
    predicts in the completion format: the reloads agree with the trials."""
    model = tiny_base_lm_folder(tmp_path / "tiny-base")
    strategies = "zero-shot,few-shot,lora"
    run_dir = run_toy_task(tmp_path, "base", strategies, "--model", str(model), "--deployment-check", "none", "--export-check", "all")
    folder = load_run_folder(run_dir)
    assert {trial.strategy: trial.status for trial in folder.records} == dict.fromkeys(strategies.split(","), "ok")
    for trial in folder.records:
        assert trial.config is not None and trial.config.models.prompt_format == "auto"  # as asked
        assert trial.models is not None and trial.models.prompt_format == "completion"  # as resolved
    assert folder.export_checks is not None
    forms = [(check.trial, form.kind, form.agreement) for check in folder.export_checks.trials for form in check.forms]
    assert ("lora.seed0", "transformers-causal-lm", 1.0) in forms and {agreement for *_, agreement in forms} == {1.0}
    assert "| prompt format | completion |" in (run_dir / "report.md").read_text()


def test_completion_forced_on_a_chat_model_is_recorded_and_hashed_apart(tmp_path):
    run_dir = run_toy_task(
        tmp_path, "forced", "zero-shot,knn-vote", "--prompt-format", "completion", "--export-check", "none", "--deployment-check", "none"
    )
    trials = {trial.strategy: trial for trial in load_run_folder(run_dir).records}
    assert {name: trial.status for name, trial in trials.items()} == {"zero-shot": "ok", "knn-vote": "ok"}
    zero_shot, knn = trials["zero-shot"], trials["knn-vote"]
    assert zero_shot.config and zero_shot.config.models.prompt_format == "completion"
    assert zero_shot.models and zero_shot.models.prompt_format == "completion"
    assert knn.config and knn.config.models.prompt_format == "auto"  # no causal LM: the same trial whatever the format
    # Another trial than zero-shot under auto; auto itself hashes as before the option (test_records: the reference runs' hashes hold).
    auto = zero_shot.config.model_copy(update={"models": zero_shot.config.models.model_copy(update={"prompt_format": "auto"})})
    assert auto.config_hash() != zero_shot.config.config_hash()


def test_chat_on_a_model_without_a_template_is_a_clean_error_and_dry_run_and_validate_say_completion(tmp_path):
    model = tiny_base_lm_folder(tmp_path / "tiny-base")
    task = toy_task_files(tmp_path / "task")
    argv = ["run", "--task", str(task), "--strategies", "zero-shot", "--profile", "smoke", "--model", str(model), "--dry-run"]
    result = run_cli([*argv, "--prompt-format", "chat"], cwd=tmp_path, kind="cli argument", invalid=True)
    assert result.outcome == "clean error", str(result)
    assert "--prompt-format chat" in result.stderr and "has no chat template" in result.stderr and "tiny-base" in result.stderr
    said = "completion (auto: the tokenizer has no chat template)"
    dry = run_cli(argv, cwd=tmp_path, kind="cli argument", invalid=None)
    assert dry.outcome == "accepted" and f"prompt format of {model}: {said}" in dry.stderr, str(dry)
    validated = run_cli(["validate", str(task), "--model", str(model)], cwd=tmp_path, kind="cli argument", invalid=None)
    assert validated.outcome == "accepted" and f"prompt format: {said}" in validated.stdout, str(validated)
    unloadable = run_cli(["validate", str(task), "--model", str(tmp_path / "task")], cwd=tmp_path, kind="cli argument", invalid=None)
    assert unloadable.outcome == "accepted" and "prompt format: auto, decided when the model loads" in unloadable.stdout, str(unloadable)


@pytest.mark.parametrize("row_tokens", [512, 60])
def test_packed_training_rows_of_a_sliding_window_model_give_the_loss_of_separate_sequences(toy_task, row_tokens):
    """A tiny Gemma 3 whose sliding layer sees 8 tokens: packed rows (one forward per row, and the padded
    rows of CUDA's path) give the loss and gradients of each example run alone, the model's own masks."""
    import torch

    from slmbench.lm.finetuning.batches import SharedPrefixCollator, padded_causal_lm_loss, row_by_row_causal_lm_loss, sft_dataset
    from slmbench.tasks.examples import Examples

    tokenizer = base_tokenizer()
    model = tiny_gemma3(tokenizer, sliding_window=8).train()
    texts = ["Profits rose sharply in the third quarter.", "The company cut its outlook.", "Sales were flat.", "Shares fell."]
    data = sft_dataset(toy_task, tokenizer, Examples(texts, [2, 0, 1, 0]), max_input_tokens=64)
    features = [data[i] for i in range(len(data))]
    reference, count = 0.0, 0
    for feature in features:
        labels = torch.tensor([feature["labels"]])
        n = int((labels[0, 1:] != -100).sum())
        reference, count = reference + model(torch.tensor([feature["input_ids"]]), labels=labels).loss * n, count + n
    (reference / count).backward()
    expected = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    for loss in (row_by_row_causal_lm_loss, padded_causal_lm_loss):
        model.zero_grad()
        total, packed_count = loss(model, SharedPrefixCollator(row_tokens)(features))
        (total / packed_count).backward()
        assert packed_count == count
        torch.testing.assert_close(total / packed_count, reference / count, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.model.layers[0].self_attn.q_proj.weight.grad, expected, rtol=1e-4, atol=1e-6)
