"""Fine-tuning machinery and the weight-updating strategies, on tiny models (CPU, seconds): the machinery
on a 2-layer Llama over the SmolLM2 tokenizer (``make_tiny_causal_lm``), the strategies on the kit's tiny
models (``slmbench.testing.tiny_models``), which they load as their own copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.train_throughput import packed_validation_loss
from slmbench.lm.finetuning.batches import (
    SharedPrefixCollator,
    causal_lm_loss,
    row_logits,
    sft_dataset,
)
from slmbench.lm.finetuning.setup import TrainingSetup, compute_parameters
from slmbench.lm.finetuning.train_loop import train_model
from slmbench.lm.scoring import answer_tokens, score_choices, tokenize_prompts
from slmbench.strategy.registry import load_registry
from slmbench.tasks.examples import Examples
from slmbench.tasks.profiles import Budget
from slmbench.testing import make_context, tiny_models

TEXTS = [
    "Profits rose sharply in the third quarter.",
    "The company cut 300 jobs after a bad year.",
    "The annual meeting will be held on Tuesday.",
    "Sales fell by half.",
    "Orders grew strongly and the outlook was raised.",
    "The chief executive will speak at noon.",
    "Losses widened and the dividend was cancelled.",
    "It has offices in Helsinki and Tallinn.",
]
LABELS = [2, 0, 1, 0, 2, 1, 0, 1]
TRAIN = Examples(TEXTS * 2, LABELS * 2)  # 16 examples
VALIDATION = Examples(TEXTS[:6], LABELS[:6])
BUDGET = Budget(
    name="test",
    max_train_examples=None,
    max_validation_examples=None,
    max_test_examples=None,
    max_input_tokens=64,
    max_train_steps=4,
    batch_size=4,
    eval_every_steps=2,
    compute_parameters=compute_parameters(str(tiny_models()[0]), True),  # the causal LM's caps as they stand; the encoder's scaled
)

# strategy module -> what its artifact directory must hold
CAUSAL_LM_STRATEGIES = {
    "lora": {"adapter_model.safetensors", "adapter_config.json"},
    "dora": {"adapter_model.safetensors", "adapter_config.json"},
    "qlora": {"adapter_model.safetensors", "adapter_config.json"},
    "prompt-tuning": {"adapter_model.safetensors", "adapter_config.json"},
    "adapters": {"adapters.safetensors"},
    "full-finetune": {"model.safetensors", "config.json", "generation_config.json"},
}
WEIGHT_UPDATING = [*CAUSAL_LM_STRATEGIES, "encoder-finetune"]
REGISTRY = load_registry()


def strategy_class(name: str):
    return REGISTRY.strategy(name)


# --- training examples: what is trained is what is scored ----------------------------------------


def test_loss_is_on_the_answer_tokens_only(toy_task, smollm2_tokenizer):
    from slmbench.lm.prompts import build_messages

    data = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS[:3], LABELS[:3]), max_input_tokens=64)
    prompts = tokenize_prompts(
        smollm2_tokenizer, [build_messages(toy_task, t, tokenizer=smollm2_tokenizer, max_input_tokens=64) for t in TEXTS[:3]]
    )
    for row, prompt, label in zip(data, prompts, LABELS[:3]):
        answer = answer_tokens(smollm2_tokenizer, toy_task.labels[label].verbalizer)
        assert row["input_ids"] == prompt + answer  # exactly the scoring engine's prompt and answer
        assert row["labels"] == [-100] * len(prompt) + answer
    batch = SharedPrefixCollator()([data[i] for i in range(len(data))])
    targets = torch.cat([row["targets"] for row in batch["rows"]]).tolist()
    expected = [t for label in LABELS[:3] for t in answer_tokens(smollm2_tokenizer, toy_task.labels[label].verbalizer)]
    assert targets == expected


@pytest.mark.parametrize("row_tokens", [512, 60, 1])
def test_shared_prefix_packing_gives_the_loss_and_gradients_of_separate_sequences(
    toy_task, smollm2_tokenizer, row_tokens, make_tiny_causal_lm
):
    model = make_tiny_causal_lm()
    data = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS[:5], LABELS[:5]), max_input_tokens=64)
    features = [data[i] for i in range(len(data))]

    batch = SharedPrefixCollator(row_tokens)(features)
    total, count = causal_lm_loss(model, batch)
    (total / count).backward()
    packed_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()

    reference_total, reference_count = 0.0, 0
    for feature in features:  # one plain forward per example, HF's own shifted loss
        labels = torch.tensor([feature["labels"]])
        n = int((labels[0, 1:] != -100).sum())
        reference_total = reference_total + model(torch.tensor([feature["input_ids"]]), labels=labels).loss * n
        reference_count += n
    (reference_total / reference_count).backward()

    assert count == reference_count
    torch.testing.assert_close(total / count, reference_total / reference_count, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_grad, model.model.layers[0].self_attn.q_proj.weight.grad, rtol=1e-4, atol=1e-6)


def test_packing_leaves_no_padding_and_computes_the_prefix_once_per_row(toy_task, smollm2_tokenizer):
    data = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS, LABELS), max_input_tokens=64)
    features = [data[i] for i in range(len(data))]
    batch = SharedPrefixCollator(row_tokens=200)(features)
    prefix = int((batch["rows"][0]["segments"] == -1).sum())
    assert prefix > 20  # the system prompt and the chat template's start
    lengths = [len(f["input_ids"]) for f in features]
    assert int(batch["example_tokens"]) == sum(lengths)
    assert int(batch["computed_tokens"]) == sum(lengths) - prefix * (len(features) - len(batch["rows"]))
    for row in batch["rows"]:
        assert len(row["input_ids"]) <= 200
        assert row["position_ids"][:prefix].tolist() == list(range(prefix))


def test_token_budgets_shorten_training_and_validation(toy_task, smollm2_tokenizer):
    from slmbench.lm.finetuning.train_loop import planned_steps, validation_subset

    data = sft_dataset(toy_task, smollm2_tokenizer, TRAIN, max_input_tokens=64)
    collator = SharedPrefixCollator()
    setup = TrainingSetup(learning_rate=1e-3, batch_size=4, max_steps=10, eval_every_steps=None, patience=None)
    assert planned_steps(data, collator, setup) == 10
    per_step = int(collator([data[i] for i in range(4)])["computed_tokens"])
    capped = TrainingSetup(**{**vars(setup), "max_tokens": int(3.5 * per_step)})
    assert 2 <= planned_steps(data, collator, capped) <= 4  # batches differ a little in length
    by_epochs = TrainingSetup(**{**vars(setup), "max_steps": None, "epochs": 2})
    assert planned_steps(data, collator, by_epochs) == 8  # 16 examples, batches of 4

    lengths = [len(ids) for ids in data["input_ids"]]
    assert len(validation_subset(data, None)) == 16
    assert len(validation_subset(data, lengths[0] + lengths[1] + lengths[2])) == 3
    assert len(validation_subset(data, 1)) == 1  # never empty


# --- every strategy fits, predicts and saves the right artifact ----------------------------------


@pytest.mark.parametrize("name", WEIGHT_UPDATING)
def test_strategy_fits_predicts_and_saves_a_safetensors_artifact(name, toy_task, tmp_path):
    from safetensors import safe_open

    context = make_context(strategy_class(name), tmp_path / name, task=toy_task, budget=BUDGET)
    strategy = strategy_class(name)(context)
    strategy.fit(TRAIN, VALIDATION)
    strategy.save(context.artifact_dir)  # as the trial does, before any prediction
    predictions = strategy.predict(TEXTS[:5])

    assert len(predictions.labels) == 5 and all(0 <= label < 3 for label in predictions.labels)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-6)
    trainable, total = strategy.parameter_counts()
    assert 0 < trainable <= total
    details = strategy.details
    scale = details["compute_scale"]  # 1 for the causal LM's fine-tunes; the encoder, smaller, gets more steps
    steps, every = round(4 * scale), round(2 * scale)
    evaluated = sorted({0, *range(every, steps, every), steps})  # every `every` steps, and after the last
    assert details["train_steps"] == steps and details["best_step"] in evaluated
    assert [step for step, _ in details["loss_curve"]["train"]] == list(range(1, steps + 1))
    assert [step for step, _ in details["loss_curve"]["validation"]] == evaluated
    assert details["train_compute"] == details["train_tokens_computed"] * details["model_parameters"]
    assert details["train_tokens_per_second"] > 0

    files = {p.name for p in context.artifact_dir.iterdir()}
    if name != "encoder-finetune":
        assert scale == 1
    if name == "encoder-finetune":
        assert {"model.safetensors", "config.json"} <= files
        assert trainable == total and scale == round(BUDGET.compute_parameters / compute_parameters(str(tiny_models()[1]), False), 3) > 1
        return
    assert files == {*CAUSAL_LM_STRATEGIES[name], "training.json"}
    weights = [p for p in context.artifact_dir.iterdir() if p.suffix == ".safetensors"]
    with safe_open(str(weights[0]), "pt") as handle:
        keys = list(handle.keys())
        stored = sum(handle.get_tensor(k).numel() for k in keys)
    if name == "full-finetune":
        assert trainable == total
    else:  # adapter-only: nothing of the base model is saved
        marker = {"adapters": ".adapter.", "prompt-tuning": "prompt_embeddings"}.get(name, "lora_")
        assert keys and all(marker in key for key in keys), keys[:5]
        assert stored == trainable < total / 2  # the kit's Llama has 512 tokens: its layers, which are adapted, are most of it


def test_unknown_options_are_rejected_with_a_suggestion(toy_task, tmp_path):
    from slmbench.common.options import OptionError

    with pytest.raises(OptionError, match="lora has no option 'alhpa'; did you mean 'alpha'?"):
        make_context(strategy_class("lora"), tmp_path / "lora", task=toy_task, budget=BUDGET, alhpa=8)


def test_lora_options_reach_peft(toy_task, tmp_path):
    context = make_context(strategy_class("lora"), tmp_path / "lora", task=toy_task, budget=BUDGET, r=4, alpha=8, merge=False)
    strategy = strategy_class("lora")(context)
    strategy.fit(TRAIN, VALIDATION)
    config = strategy.model.peft_config["default"]
    assert (config.r, config.lora_alpha) == (4, 8)
    assert "lm_head" not in strategy.details["target_modules"]
    assert set(strategy.details["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_soft_prompt_is_scored_where_it_was_trained(toy_task, tmp_path):
    """The scoring engine (prefix cache, packing) sees a prompt-tuned model exactly as training does."""
    from slmbench.lm.finetuning.batches import SoftPromptLM
    from slmbench.lm.prompts import build_messages

    context = make_context(strategy_class("prompt-tuning"), tmp_path / "pt", task=toy_task, budget=BUDGET, learning_rate=0.5)
    strategy = strategy_class("prompt-tuning")(context)
    strategy.fit(TRAIN, VALIDATION)
    model = strategy.model
    _, tokenizer = context.models.causal_lm()  # the kit's tiny Llama's tokenizer, which the strategy trained with
    conversations = [build_messages(toy_task, t, tokenizer=tokenizer, max_input_tokens=64) for t in TEXTS[:4]]
    verbalizers = [label.verbalizer for label in toy_task.labels]
    scores = score_choices(SoftPromptLM(model), tokenizer, conversations, verbalizers, batch_size=3, bfloat16=False)

    expected = np.zeros((4, 3))
    with torch.no_grad():
        for choice in range(3):
            data = sft_dataset(toy_task, tokenizer, Examples(TEXTS[:4], [choice] * 4), max_input_tokens=64)
            for i in range(4):
                (row,) = SharedPrefixCollator()([data[i]])["rows"]
                log_probs = torch.log_softmax(row_logits(model, row).float(), dim=-1)
                expected[i, choice] = log_probs[torch.arange(len(row["targets"])), row["targets"]].sum()
    expected = torch.softmax(torch.tensor(expected), dim=1).numpy()
    np.testing.assert_allclose(scores.probabilities, expected, atol=1e-5)


# --- bottleneck adapters --------------------------------------------------------------------------


def test_adapters_start_as_the_identity_and_only_they_train(smollm2_tokenizer, make_tiny_causal_lm):
    from slmbench.lm.bottleneck import (
        AdaptedOutput,
        BottleneckAdapter,
        adapter_state_dict,
        add_bottleneck_adapters,
    )

    adapter = BottleneckAdapter(hidden_size=64, bottleneck=8)
    hidden = torch.randn(3, 5, 64)
    torch.testing.assert_close(adapter(hidden), hidden)  # zero-initialised up-projection
    with torch.no_grad():
        adapter.up.weight.normal_()
    assert not torch.allclose(adapter(hidden), hidden)

    base, adapted = make_tiny_causal_lm(), make_tiny_causal_lm()
    names = add_bottleneck_adapters(adapted, bottleneck=8)
    assert names == [f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.o_proj", "mlp.down_proj")]
    assert all(isinstance(adapted.get_submodule(name), AdaptedOutput) for name in names)
    ids = torch.tensor([[1, 20, 300, 4000, 5]])
    with torch.no_grad():
        torch.testing.assert_close(adapted(ids).logits, base(ids).logits)
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_state_dict(adapted)) and all(".adapter." in n for n in trainable)
    assert len(trainable) == 4 * len(names)  # down and up, weight and bias


def test_adapters_fail_clearly_on_an_unknown_architecture():
    from slmbench.lm.bottleneck import add_bottleneck_adapters

    with pytest.raises(ValueError, match="no transformer block"):
        add_bottleneck_adapters(torch.nn.Sequential(torch.nn.Linear(4, 4)))


# --- early stopping and the best checkpoint -------------------------------------------------------


def _lm_training(toy_task, tokenizer, **setup_fields):
    data = sft_dataset(toy_task, tokenizer, TRAIN, max_input_tokens=64)
    validation = sft_dataset(toy_task, tokenizer, VALIDATION, max_input_tokens=64)
    setup = TrainingSetup(**{"batch_size": 4, "max_steps": 8, "eval_every_steps": 1, "warmup": 0.0, **setup_fields})
    return data, validation, setup


def test_early_stopping_restores_the_best_checkpoint(toy_task, smollm2_tokenizer, make_tiny_causal_lm):
    """A learning rate that wrecks the model: validation loss only rises, so training stops after
    ``patience`` bad evaluations and the initial weights (step 0, the best) come back."""
    model = make_tiny_causal_lm()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    train, validation, setup = _lm_training(toy_task, smollm2_tokenizer, learning_rate=5.0, patience=2)
    result = train_model(
        model,
        train,
        validation,
        setup,
        collator=SharedPrefixCollator(),
        batch_loss=causal_lm_loss,
        processing_class=smollm2_tokenizer,
        progress=None,
        description="test",
    )
    assert result.best_step == 0 and result.stopped_early and result.steps == 2
    losses = [loss for _, loss in result.validation_curve]
    assert losses[1] > losses[0] and losses[2] > losses[0]
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, initial[name])
    restored = packed_validation_loss(model, validation, collator=SharedPrefixCollator(), batch_loss=causal_lm_loss)
    assert restored == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_best_checkpoint_is_the_lowest_validation_loss_not_the_last(toy_task, smollm2_tokenizer, make_tiny_causal_lm):
    """Validation losses forced to 5, 4, 3, 3.5, 3.6...: the weights of step 2 must be the ones kept."""
    model = make_tiny_causal_lm()
    forced = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0])
    snapshots = []

    def batch_loss(model, batch):
        if model.training:
            return causal_lm_loss(model, batch)
        # The validation split is one batch, so each call in eval mode is one evaluation.
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return torch.tensor(next(forced)), 1

    train, validation, setup = _lm_training(toy_task, smollm2_tokenizer, learning_rate=1e-2, patience=3)
    result = train_model(
        model,
        train,
        validation,
        setup,
        collator=SharedPrefixCollator(),
        batch_loss=batch_loss,
        processing_class=smollm2_tokenizer,
        progress=None,
        description="test",
    )
    assert [loss for _, loss in result.validation_curve] == pytest.approx([5.0, 4.0, 3.0, 3.5, 3.6, 3.7])
    assert result.best_step == 2 and result.best_validation_loss == 3.0
    assert result.stopped_early and result.steps == 5
    kept = snapshots[2]
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, kept[name])
    assert not all(torch.equal(snapshots[0][n], kept[n]) for n in kept)  # training did move the weights


# --- plugin hygiene -------------------------------------------------------------------------------


def test_only_the_full_finetunes_update_every_weight_and_dora_is_lora_configured():
    from slmbench import Family
    from slmbench_plugins.lora import Lora

    classes = {name: strategy_class(name) for name in WEIGHT_UPDATING}
    assert {name for name, cls in classes.items() if cls.family == Family.FULL} == {"full-finetune", "encoder-finetune"}
    assert issubclass(classes["dora"], Lora) and classes["dora"].Options().use_dora and not Lora.Options().use_dora
    assert classes["dora"].Options().dropout == 0.0 and classes["dora"].Options.model_fields.keys() == Lora.Options.model_fields.keys()


def test_qlora_keeps_4bit_layers_trainable_after_a_validation_pass(toy_task, tmp_path):
    """bitsandbytes repacks 4-bit weights for CPU inference on a no-grad eval pass (on AVX-512 BF16 CPUs),
    a layout with no backward; validation happens mid-training, so qlora keeps the trainable layout until
    it predicts. The flag it sets must exist on bitsandbytes' layers, and gradients after an eval pass
    must equal those before it."""
    from bitsandbytes.functional import has_avx512bf16
    from bitsandbytes.nn import Linear4bit

    from slmbench_plugins.qlora import set_cpu_inference_layout

    # dropout 0: deterministic gradients
    context = make_context(strategy_class("qlora"), tmp_path / "qlora", task=toy_task, budget=BUDGET, dropout=0.0)
    strategy = strategy_class("qlora")(context)
    model, _ = strategy.build()
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert layers and all(hasattr(m, "support_avx512bf16_for_cpu") for m in layers)  # a rename fails here
    assert not any(m.support_avx512bf16_for_cpu for m in layers)
    tokens = torch.tensor([[1, 20, 300, 400, 5, 6]])  # the kit's Llama has 512 tokens

    def lora_gradients() -> dict[str, torch.Tensor]:
        model.train()
        model.zero_grad()
        model(tokens, labels=tokens).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}

    before = lora_gradients()
    model.eval()
    with torch.no_grad():
        model(tokens)
    after = lora_gradients()
    assert before and before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)
    set_cpu_inference_layout(model, True)
    assert all(m.support_avx512bf16_for_cpu == has_avx512bf16() for m in layers)


# --- closer to the hardware: bf16 frozen weights, compile fallback, validation by the engine -------


def _tiny_lora(make_tiny_causal_lm):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(make_tiny_causal_lm(), config)


def _train(model, toy_task, tokenizer, validation=True, **setup_fields):
    fields = {"learning_rate": 1e-2, "patience": None, **setup_fields}
    train, validation_data, setup = _lm_training(toy_task, tokenizer, **fields)
    return train_model(
        model,
        train,
        validation_data if validation else None,
        setup,
        collator=SharedPrefixCollator(),
        batch_loss=causal_lm_loss,
        processing_class=tokenizer,
        progress=None,
        description="test",
    )


def test_bf16_frozen_base_trains_fp32_lora_and_is_fp32_again_afterwards(toy_task, smollm2_tokenizer, make_tiny_causal_lm):
    model = _tiny_lora(make_tiny_causal_lm)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    seen = set()
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    q_proj.base_layer.register_forward_pre_hook(lambda module, args: seen.add(module.weight.dtype))
    result = _train(model, toy_task, smollm2_tokenizer, max_steps=3, autocast=torch.bfloat16)
    assert seen == {torch.bfloat16}  # in training and validation
    assert result.details()["frozen_bfloat16_layers"] == 2 * 7  # every frozen linear but the vocabulary projection
    assert np.isfinite(result.best_validation_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, initial[n])]
    assert any("lora_B" in n for n in moved)


def test_bf16_frozen_weights_give_the_losses_of_autocast(toy_task, smollm2_tokenizer, make_tiny_causal_lm):
    """Autocast computes frozen fp32 weights in bf16 anyway: storing them in bf16 changes nothing."""
    curves = [
        _train(
            _tiny_lora(make_tiny_causal_lm),
            toy_task,
            smollm2_tokenizer,
            validation=False,
            max_steps=3,
            autocast=torch.bfloat16,
            bfloat16_frozen_weights=stored,
        ).train_curve
        for stored in (False, True)
    ]
    assert curves[0] == curves[1]


def test_compile_failure_falls_back_to_eager_and_is_recorded(toy_task, smollm2_tokenizer, make_tiny_causal_lm, monkeypatch):
    def broken_compile(function, **kwargs):
        def compiled(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _tiny_lora(make_tiny_causal_lm)
    result = _train(model, toy_task, smollm2_tokenizer, max_steps=2, compile=True)
    assert result.steps == 2 and np.isfinite(result.best_validation_loss)
    assert result.details()["compile"].startswith("eager: compile failed (RuntimeError: no C++ compiler")
    assert "forward" not in vars(model.get_base_model())  # eager again


def test_compile_unavailable_is_recorded(toy_task, smollm2_tokenizer, make_tiny_causal_lm, monkeypatch):
    def unavailable(function, **kwargs):
        raise ImportError("torch._dynamo is not supported here")

    monkeypatch.setattr(torch, "compile", unavailable)
    result = _train(_tiny_lora(make_tiny_causal_lm), toy_task, smollm2_tokenizer, max_steps=1, compile=True)
    assert result.details()["compile"].startswith("eager: compile failed (ImportError")
    assert _train(make_tiny_causal_lm(), toy_task, smollm2_tokenizer, max_steps=1).details()["compile"] == "off"


def test_validation_by_scoring_is_the_packed_validation_loss(toy_task, smollm2_tokenizer, make_tiny_causal_lm):
    from slmbench.lm.finetuning.batches import validation_by_scoring

    model = _tiny_lora(make_tiny_causal_lm).eval()
    data = sft_dataset(toy_task, smollm2_tokenizer, VALIDATION, max_input_tokens=64)
    total, count = validation_by_scoring(model, data, batch_size=4, bfloat16=False)
    packed = packed_validation_loss(model, data, collator=SharedPrefixCollator(), batch_loss=causal_lm_loss)
    assert count == sum(len(answer_tokens(smollm2_tokenizer, toy_task.labels[y].verbalizer)) for y in VALIDATION.labels)
    assert total / count == pytest.approx(packed, rel=1e-4)


def test_memory_is_handed_back_every_n_steps(toy_task, smollm2_tokenizer, make_tiny_causal_lm, monkeypatch):
    import slmbench.lm.finetuning.hf_trainer

    calls = []
    monkeypatch.setattr(slmbench.lm.finetuning.hf_trainer, "release_freed_memory", lambda: calls.append(1))
    _train(make_tiny_causal_lm(), toy_task, smollm2_tokenizer, validation=False, max_steps=4, trim_memory_every_steps=2)
    assert len(calls) == 2
