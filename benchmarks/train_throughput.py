"""Training throughput: the seed recipe against slmbench's fine-tuning set-up, same data, model, machine.

Both train LoRA (rank 16, all linear layers, the same seed, learning rate and schedule) on the same
examples of a task's quick-profile train split, for the same number of examples, in this one
process, one after the other:

- seed recipe: batch 1, gradient accumulation 4, fp32, every sequence padded to one max length (the
  longest of the data, so nothing is truncated), the model's own loss over full logits;
- slmbench: ``slmbench.finetune`` as the strategies use it: batch 8 (the quick profile's), the
  batch's shared prompt computed once per row and no padding, logits only where an answer token is
  predicted, bfloat16 autocast where the CPU has native bf16;
- the same at batch 4, the seed's effective batch: as many optimizer steps as the seed recipe, so
  the validation losses compare the set-ups alone.

Tokens per second count the examples' real tokens (prompt + answer, never padding) over the time
spent in training steps (forward, backward, optimizer). Afterwards both models are scored by the
same function, in fp32, on the same validation examples (mean loss of the answer tokens).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from typing import Any


@dataclass
class PadToMaxLength:
    """The seed recipe's collator: right padding to a fixed length, labels -100 on the prompt and the padding."""

    max_length: int
    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        n = len(features)
        input_ids = torch.full((n, self.max_length), self.pad_token_id)
        labels = torch.full((n, self.max_length), -100)
        attention_mask = torch.zeros((n, self.max_length), dtype=torch.long)
        for i, feature in enumerate(features):
            length = len(feature["input_ids"])
            input_ids[i, :length] = torch.tensor(feature["input_ids"])
            labels[i, :length] = torch.tensor(feature["labels"])
            attention_mask[i, :length] = 1
        return {
            "inputs": {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
            "example_tokens": attention_mask.sum(),
            "computed_tokens": torch.tensor(input_ids.numel()),
            "examples": torch.tensor(n),
        }


def full_logits_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """The model's own causal-LM loss (mean over the answer tokens), as a (sum, count) pair."""
    count = int((batch["inputs"]["labels"][:, 1:] != -100).sum())
    return model(**batch["inputs"]).loss * count, count


def run(label: str, setup: Any, collator: Any, batch_loss: Any, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    import gc

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    from slmbench.finetune import train_model, validation_loss
    from slmbench.sft import SharedPrefixCollator, causal_lm_loss

    train, validation, tokenizer, path = data
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    started = time.perf_counter()
    result = train_model(
        model, train, None, setup, collator=collator, batch_loss=batch_loss,
        processing_class=tokenizer, progress=None, description=label,
    )
    wall = time.perf_counter() - started
    loss = validation_loss(model, validation, collator=SharedPrefixCollator(), batch_loss=causal_lm_loss)
    del model
    gc.collect()
    return {
        "label": label,
        "steps": result.steps,
        "examples": result.examples_seen,
        "tokens": result.example_tokens,
        "computed": result.computed_tokens,
        "seconds": result.step_seconds,
        "wall": wall,
        "tokens_per_second": result.tokens_per_second,
        "validation_loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="financial_sentiment")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--examples", type=int, default=160, help="training examples each recipe sees (default 160)")
    parser.add_argument("--validation-examples", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from slmbench.data import load_splits, resolve_data_dir
    from slmbench.finetune import TrainingSetup, autocast_dtype
    from slmbench.sft import SharedPrefixCollator, causal_lm_loss, sft_dataset
    from slmbench.models import resolve_causal_lm
    from slmbench.plugins import load_registry
    from slmbench.profiles import get_profile
    from slmbench.runner import resolve_task_path
    from slmbench.strategy import Examples
    from slmbench.tasks import load_task

    budget = get_profile("quick")
    task = load_task(resolve_task_path(args.task, load_registry()))
    splits = load_splits(task, resolve_data_dir(args.data_dir), budget)
    path = resolve_causal_lm("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    n, m = args.examples, args.validation_examples
    train = sft_dataset(task, tokenizer, Examples(splits.train.texts[:n], splits.train.labels[:n]), budget.max_input_tokens)
    validation = sft_dataset(
        task, tokenizer, Examples(splits.validation.texts[:m], splits.validation.labels[:m]), budget.max_input_tokens
    )
    data = (train, validation, tokenizer, path)
    max_length = max(len(ids) for ids in train["input_ids"])
    print(
        f"{task.name}: {n} training examples ({sum(map(len, train['input_ids'])) / n:.0f} tokens on average, "
        f"longest {max_length}), {m} validation examples; LoRA r=16 on {path}; torch threads: {torch.get_num_threads()}"
    )

    base = TrainingSetup(learning_rate=args.learning_rate, batch_size=1, max_steps=None, eval_every_steps=None, patience=None, epochs=1)
    seed = run(
        "seed recipe (batch 1 x accumulation 4, fp32, padded to max length)",
        replace(base, batch_size=1, gradient_accumulation_steps=4),
        PadToMaxLength(max_length, tokenizer.pad_token_id),
        full_logits_loss,
        args,
        data,
    )
    ours = run(
        f"slmbench (batch {budget.batch_size}, shared-prefix packing, {'bf16 autocast' if autocast_dtype('cpu') else 'fp32'})",
        replace(base, batch_size=budget.batch_size, autocast=autocast_dtype("cpu")),
        SharedPrefixCollator(),
        causal_lm_loss,
        args,
        data,
    )
    same_batch = run(
        "slmbench at the seed's effective batch (4)",
        replace(base, batch_size=4, autocast=autocast_dtype("cpu")),
        SharedPrefixCollator(),
        causal_lm_loss,
        args,
        data,
    )
    print()
    print(f"{'recipe':<72} {'steps':>5} {'tokens':>7} {'computed':>8} {'train s':>8} {'tokens/s':>9} {'val loss':>9}")
    for r in (seed, ours, same_batch):
        print(
            f"{r['label']:<72} {r['steps']:>5} {r['tokens']:>7} {r['computed']:>8} {r['seconds']:>8.1f} "
            f"{r['tokens_per_second']:>9.1f} {r['validation_loss']:>9.4f}"
        )
    for r in (ours, same_batch):
        ratio = r["tokens_per_second"] / seed["tokens_per_second"]
        loss_change = r["validation_loss"] / seed["validation_loss"] - 1
        print(
            f"\n{r['label']}:\n  throughput {ratio:.2f}x the seed recipe (target >= 3x); "
            f"final validation loss {loss_change:+.1%} (target: no more than +5%)"
        )


if __name__ == "__main__":
    main()
