"""Training throughput: slmbench's fine-tuning set-up against today's (a named baseline), same data, model, machine.

Every set-up trains LoRA (rank 16, alpha 32, all linear layers, the same seed, learning rate and
schedule) on the same examples of a task's quick-profile train split, for the same number of
examples (batch 8, the quick profile's), in this one process, one after the other:

- ``today``: the set-up before issue 14 (the named baseline every ratio is against): LoRA dropout
  0.05, fp32 frozen weights re-cast by bf16 autocast at every pass, the for-loop AdamW, heap memory
  handed back to the OS after every step, validation loss by packed rows;
- one row per change, today's set-up with that change alone (``--ablations``);
- ``fast``: ``TrainingSetup``'s defaults and the LoRA strategy's (every change together), and the
  same with LoRA dropout 0 (a strategy parameter, default kept at 0.05);
- ``fast + compile``: the same with ``torch.compile`` (``--compile``; compile time counts);
- ``seed recipe``: the seed notebooks' (batch 1, accumulation 4, fp32, padding to the longest
  example, full-vocabulary logits) with ``--seed-recipe`` (slow).

Tokens per second count the examples' real tokens (prompt + answer) over the time spent in training
steps (forward, backward, optimizer), and over their CPU time (every thread; steadier when other
jobs share the cores, ``--threads 1`` steadier still). With ``--repeats`` the set-ups run that many
times, interleaved, and each keeps its fastest run (other jobs on the machine only ever slow a run
down). GFLOP/s count 4 x the frozen linear parameters (forward and input-gradient backward; the
vocabulary projection, attention and the small LoRA matrices are left out) x the tokens run through
the model (a prefix shared by a batch counts once), against the bf16 matmul peak measured at the
start (``slmbench.lm.hardware``). Afterwards every model is scored by the same function, in fp32, on
the same validation examples (mean loss of the answer tokens). Then one validation pass of a trained
model is timed both ways: packed rows (today) and the scoring engine.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py --data-dir ../shared/data --json train.json

``--small`` (``SMALL``: one step per set-up) checks that it runs (``tests/test_benchmarks.py``)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py --data-dir ../shared/data --small --json /tmp/train.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

"""The built-in task YAMLs."""

TODAY_SETUP: dict[str, Any] = {
    "optimizer": "adamw_torch",
    "bfloat16_frozen_weights": False,
    "trim_memory_every_steps": 1,
    "score_validation": False,
}
"""``TrainingSetup`` fields of today's set-up (their defaults are the fast path)."""
TODAY_DROPOUT = 0.05
"""LoRA dropout of today's set-up."""
ABLATIONS: dict[str, tuple[dict[str, Any], float | None]] = {
    "today + LoRA dropout 0": ({}, 0.0),
    "today + bf16 frozen weights": ({"bfloat16_frozen_weights": True}, None),
    "today + fused AdamW": ({"optimizer": "adamw_torch_fused"}, None),
    "today + memory trim every 10 steps": ({"trim_memory_every_steps": 10}, None),
}
"""Today's set-up with one change: (TrainingSetup fields, LoRA dropout or None for today's)."""


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


def packed_validation_loss(model: Any, dataset: Any, *, collator: Callable, batch_loss: Callable, autocast: Any = None) -> float:
    """Mean answer-token loss of ``model`` over ``dataset`` by packed rows, outside any trainer: the
    validation pass before the scoring engine took it over (``validation_by_scoring``)."""
    from contextlib import nullcontext

    import torch

    from slmbench.lm.finetuning.setup import EVAL_BATCH_SIZE

    total, count = 0.0, 0
    context = torch.autocast(str(next(model.parameters()).device.type), dtype=autocast) if autocast else nullcontext()
    model.eval()
    with torch.no_grad(), context:
        for start in range(0, len(dataset), EVAL_BATCH_SIZE):
            batch = collator([dataset[i] for i in range(start, min(start + EVAL_BATCH_SIZE, len(dataset)))])
            batch_total, batch_count = batch_loss(model, batch)
            total += float(batch_total)
            count += batch_count
    return total / max(count, 1)


def lora_model(path: str, dropout: float) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def frozen_linear_parameters(model: Any) -> int:
    """Parameters of the frozen linear layers but the vocabulary projection (the FLOPs that count)."""
    import torch

    head = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head and not m.weight.requires_grad)


def run(label: str, setup: Any, dropout: float, data: tuple, peak: float, *, padded: bool = False) -> tuple[dict[str, Any], Any]:
    from slmbench.lm.finetuning.batches import SharedPrefixCollator, causal_lm_loss
    from slmbench.lm.finetuning.train_loop import train_model
    from slmbench.lm.memory import PeakMemory

    train, validation, tokenizer, path = data
    model = lora_model(path, dropout)
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]
    if padded:
        collator, batch_loss = PadToMaxLength(max(map(len, train["input_ids"])), tokenizer.pad_token_id), full_logits_loss
    else:
        collator, batch_loss = SharedPrefixCollator(), causal_lm_loss
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = train_model(
            model,
            train,
            None,
            setup,
            collator=collator,
            batch_loss=batch_loss,
            processing_class=tokenizer,
            progress=None,
            description=label,
        )
    wall = time.perf_counter() - started
    gflops = 4 * frozen_linear_parameters(model) * result.computed_tokens / result.step_seconds / 1e9
    loss = packed_validation_loss(model, validation, collator=SharedPrefixCollator(), batch_loss=causal_lm_loss)
    record = {
        "label": label,
        "lora_dropout": dropout,
        "setup": {k: str(v) if k == "autocast" else v for k, v in vars(setup).items()},
        "steps": result.steps,
        "examples": result.examples_seen,
        "tokens": result.example_tokens,
        "computed_tokens": result.computed_tokens,
        "train_seconds": round(result.step_seconds, 2),
        "train_cpu_seconds": round(result.step_cpu_seconds, 2),
        "tokens_per_cpu_second": round(result.example_tokens / result.step_cpu_seconds, 1),
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "gflops": round(gflops, 1),
        "fraction_of_bf16_peak": round(gflops / peak, 4),
        "peak_memory_added_mb": round(memory.peak_added_bytes / 2**20, 1),
        "validation_loss": round(loss, 5),
        "compile": result.compile_status,
    }
    print(
        f"{label:<38} {record['steps']:>5} {record['train_seconds']:>8.1f} {record['tokens_per_second']:>9.1f} "
        f"{gflops:>8.1f} {gflops / peak:>7.1%} {record['peak_memory_added_mb']:>8.0f} {loss:>9.4f}",
        flush=True,
    )
    return record, model


def time_validation(model: Any, validation: Any, autocast: Any) -> dict[str, Any]:
    """One validation pass of ``model`` by packed rows (today) and by the scoring engine, back to back."""
    from slmbench.lm.finetuning.batches import (
        SharedPrefixCollator,
        causal_lm_loss,
        validation_by_scoring,
    )
    from slmbench.lm.finetuning.setup import EVAL_BATCH_SIZE

    model.eval()
    started = time.perf_counter()
    packed = packed_validation_loss(model, validation, collator=SharedPrefixCollator(), batch_loss=causal_lm_loss, autocast=autocast)
    packed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    total, count = validation_by_scoring(model, validation, batch_size=EVAL_BATCH_SIZE, bfloat16=autocast is not None)
    engine_seconds = time.perf_counter() - started
    return {
        "packed_rows_seconds": round(packed_seconds, 2),
        "scoring_engine_seconds": round(engine_seconds, 2),
        "speed_up": round(packed_seconds / engine_seconds, 2),
        "packed_rows_loss": round(packed, 5),
        "scoring_engine_loss": round(total / count, 5),
    }


SMALL = {"examples": 8, "validation_examples": 8, "repeats": 1, "threads": 1}
"""``--small``: one training step per set-up (8 examples), 8 validation examples, one run each, one
thread (a check that the benchmark runs, in about a minute; its figures mean little)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="financial_sentiment", help="task YAML or registered name")
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", "../shared/data"))
    parser.add_argument("--examples", type=int, default=240, help="training examples each set-up sees (default 240)")
    parser.add_argument("--validation-examples", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--ablations", action="store_true", help="also today's set-up with each change alone")
    parser.add_argument("--compile", action="store_true", help="also the fast set-up with torch.compile")
    parser.add_argument("--seed-recipe", action="store_true", help="also the seed notebooks' recipe (slow)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every set-up, interleaved (the fastest counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--small", action="store_true", help=f"a quick check that it runs: {SMALL}")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.small:  # the small values, unless given
        parser.set_defaults(**SMALL)
        args = parser.parse_args(argv)
    return args


def load_data(args: argparse.Namespace, budget: Any) -> tuple[Any, tuple]:
    """The task and (train, validation, tokenizer, model path): the first ``--examples`` and
    ``--validation-examples`` of the quick profile's splits, as SFT datasets of the embedded causal LM."""
    from transformers import AutoTokenizer

    from slmbench.engine.run_options import resolve_task_path
    from slmbench.lm.finetuning.batches import sft_dataset
    from slmbench.lm.models import EMBEDDED_CAUSAL_LM, resolve_causal_lm
    from slmbench.strategy.registry import load_registry
    from slmbench.tasks.examples import Examples
    from slmbench.tasks.sources import resolve_data_dir
    from slmbench.tasks.spec import load_task
    from slmbench.tasks.splits import load_splits

    task = load_task(resolve_task_path(args.task, load_registry()))
    splits = load_splits(task, resolve_data_dir(args.data_dir), budget)
    path = resolve_causal_lm(EMBEDDED_CAUSAL_LM)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def dataset(split: Any, n: int) -> Any:
        return sft_dataset(task, tokenizer, Examples(split.texts[:n], split.labels[:n]), budget.max_input_tokens)

    return task, (dataset(splits.train, args.examples), dataset(splits.validation, args.validation_examples), tokenizer, path)


def set_ups(args: argparse.Namespace, budget: Any, autocast: Any) -> tuple[list[tuple[str, Any, float]], Any]:
    """(label, TrainingSetup, LoRA dropout) of every set-up that runs ``--repeats`` times, today's first;
    and today's TrainingSetup (the seed recipe starts from it)."""
    from slmbench.lm.finetuning.setup import TrainingSetup
    from slmbench_plugins.lora import Lora

    dropout = Lora.Options().dropout
    fast = TrainingSetup(
        learning_rate=args.learning_rate,
        batch_size=budget.batch_size,
        max_steps=None,
        eval_every_steps=None,
        patience=None,
        epochs=1,
        autocast=autocast,
    )
    today = replace(fast, **TODAY_SETUP)
    runs = [("today", today, TODAY_DROPOUT)]
    if args.ablations:
        runs += [(label, replace(today, **fields), TODAY_DROPOUT if p is None else p) for label, (fields, p) in ABLATIONS.items()]
    runs.append(("fast", fast, dropout))
    if dropout:
        runs.append(("fast + LoRA dropout 0", fast, 0.0))
    if args.compile:
        runs.append(("fast + compile", replace(fast, compile=True), dropout))
    return runs, today


def run_interleaved(runs: list[tuple[str, Any, float]], repeats: int, data: tuple, peak: float) -> tuple[list[dict[str, Any]], Any]:
    """Every set-up ``repeats`` times, interleaved; each keeps its fastest run (with every run's
    tokens/s). Also the model the last ``fast`` run trained."""
    best: dict[str, dict[str, Any]] = {}
    fast_model = None
    for _ in range(repeats):
        for label, setup, dropout in runs:
            record, model = run(label, setup, dropout, data, peak)
            speeds = best.get(label, {}).get("tokens_per_second_runs", []) + [record["tokens_per_second"]]
            if label not in best or record["tokens_per_second"] > best[label]["tokens_per_second"]:
                best[label] = record
            best[label]["tokens_per_second_runs"] = speeds
            if label == "fast":
                fast_model = model
    return list(best.values()), fast_model


def compare_to_today(results: list[dict[str, Any]]) -> None:
    """Add each set-up's ratios to the first (today's) and print them."""
    baseline = results[0]
    for record in results:
        record["speed_up_vs_today"] = round(record["tokens_per_second"] / baseline["tokens_per_second"], 2)
        record["cpu_speed_up_vs_today"] = round(record["tokens_per_cpu_second"] / baseline["tokens_per_cpu_second"], 2)
        record["validation_loss_change_vs_today"] = round(record["validation_loss"] / baseline["validation_loss"] - 1, 4)
    print()
    for record in results[1:]:
        print(
            f"{record['label']}: {record['speed_up_vs_today']:.2f}x today's training throughput "
            f"({record['cpu_speed_up_vs_today']:.2f}x in CPU time), "
            f"validation loss {record['validation_loss_change_vs_today']:+.1%}"
        )


def print_header(hardware: dict[str, Any], task: Any, data: tuple, budget: Any) -> None:
    train, validation, _, path = data
    print(f"{hardware['cpu_model']}, {hardware['cpu_features']}, {hardware['torch_threads']} torch threads")
    print("matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in hardware["matmul_peak_gflops"].items()))
    print(
        f"{task.name}: {len(train)} training examples ({sum(map(len, train['input_ids'])) / max(len(train), 1):.0f} tokens on average), "
        f"{len(validation)} validation examples; LoRA r=16 on {path}, batch {budget.batch_size}"
    )
    print(f"\n{'set-up':<38} {'steps':>5} {'train s':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of bf16':>7} {'+MB RSS':>8} {'val loss':>9}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)

    import torch
    from transformers.utils import logging

    from slmbench.lm.finetuning.setup import autocast_dtype
    from slmbench.lm.hardware import hardware_info
    from slmbench.tasks.profiles import get_profile

    logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    hardware = hardware_info().model_dump()
    peak = hardware["matmul_peak_gflops"]["bfloat16"]
    budget = get_profile("quick")
    task, data = load_data(args, budget)
    print_header(hardware, task, data, budget)

    autocast = autocast_dtype("cpu")
    runs, today = set_ups(args, budget, autocast)
    results, fast_model = run_interleaved(runs, args.repeats, data, peak)
    if args.seed_recipe:
        seed = replace(today, batch_size=1, gradient_accumulation_steps=4, autocast=None)
        results.append(run("seed recipe", seed, TODAY_DROPOUT, data, peak, padded=True)[0])
    compare_to_today(results)
    validation_timing = time_validation(fast_model, data[1], autocast)
    print(
        f"\none validation pass ({len(data[1])} examples): packed rows {validation_timing['packed_rows_seconds']:.2f} s, "
        f"scoring engine {validation_timing['scoring_engine_seconds']:.2f} s ({validation_timing['speed_up']:.2f}x); "
        f"loss {validation_timing['packed_rows_loss']:.4f} vs {validation_timing['scoring_engine_loss']:.4f}"
    )
    summary = {
        "benchmark": "train_throughput",
        "args": {key: value for key, value in vars(args).items() if key != "json"},
        "hardware": hardware,
        "runs": results,
        "validation_pass": validation_timing,
    }
    if args.json:
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=2)
        print(f"figures written to {args.json}")
    return summary


if __name__ == "__main__":
    main()
