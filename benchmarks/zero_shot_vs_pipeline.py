"""Scoring engine vs the seed notebooks' recipe, zero-shot and few-shot, on financial_sentiment.

The recipe: transformers ``pipeline("text-generation")``, one prompt at a time, 4 greedy new
tokens, the label found by substring match of its verbalizer in the output (none found = wrong).
The engine: ``slmbench.scoring.score_choices`` (shared-prefix KV cache, packed batches, one pass
per prompt for all labels, bf16 autocast where native), run in its automatic dtype and in fp32.
Both see the same chat messages (``slmbench.prompts.build_messages``) for the same test texts:
the quick profile's stratified 200-example test split (seed 13), or a stratified ``--limit``.

    HF_HUB_OFFLINE=1 python benchmarks/zero_shot_vs_pipeline.py [--limit 40] [--data-dir DIR]

Speed-ups are given on wall time and on the process's CPU time (steadier when other jobs share
the cores). GFLOP/s counts 2 x parameters x tokens run through the model per wall second (the
engine skips the vocabulary projection at most positions, so its figure slightly overstates its
work); the peak is a large square matmul timed in the same process.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slmbench.data import cap_examples, load_splits
from slmbench.models import SharedModels
from slmbench.profiles import get_profile
from slmbench.prompts import build_messages
from slmbench.scoring import answer_tokens, score_choices, tokenize_prompts
from slmbench.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "financial_sentiment.yaml"
MAX_NEW_TOKENS = 4
TARGET_SPEED_UP = {"zero-shot": 4.0, "few-shot": 8.0}


@dataclass
class Measure:
    setting: str
    method: str
    dtype: str
    seconds: float
    cpu_seconds: float
    accuracy: float
    tokens: int
    """Tokens run through the model."""
    note: str = ""


def matmul_peak_gflops(dtype: Any, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` matmul in ``dtype``."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b)[1] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(function: Any) -> tuple[Any, float, float]:
    """``function()``, its wall time and the process's CPU time (every thread), in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def demonstrations(
    texts: Sequence[str], labels: Sequence[int], n: int, n_labels: int, seed: int
) -> list[tuple[str, int]]:
    """``n`` (text, label) pairs, balanced across labels as far as ``n`` allows, drawn and shuffled with ``seed``.

    Shuffled because a label order that cycles is a pattern small models continue instead of reading the text.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    pools = [rng.permutation([i for i, y in enumerate(labels) if y == label]).tolist() for label in range(n_labels)]
    picks = [pools[k % n_labels][k // n_labels] for k in range(n)]
    return [(texts[i], labels[i]) for i in rng.permutation(picks).tolist()]


def matched_label(output: str, verbalizers: Sequence[str]) -> int | None:
    """The label whose verbalizer appears first in ``output`` (case-insensitive), else None."""
    found = {i: output.lower().find(word.lower()) for i, word in enumerate(verbalizers)}
    found = {i: at for i, at in found.items() if at >= 0}
    return min(found, key=found.get) if found else None


def run_recipe(
    pipe: Any, tokenizer: Any, conversations: list, verbalizers: Sequence[str], gold: Sequence[int], setting: str
) -> Measure:
    """The notebooks' loop: generate, then look for a label word in the generated text."""
    outputs, seconds, cpu_seconds = _timed(
        lambda: [
            pipe(c, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_full_text=False)[0]["generated_text"]
            for c in conversations
        ]
    )
    predicted = [matched_label(o, verbalizers) for o in outputs]
    prompt_tokens = [len(ids) for ids in tokenize_prompts(tokenizer, conversations)]
    new_tokens = [len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs]
    fallbacks = sum(p is None for p in predicted)
    return Measure(
        setting,
        "pipeline recipe",
        "float32",
        seconds,
        cpu_seconds,
        sum(p == y for p, y in zip(predicted, gold)) / len(gold),
        sum(prompt_tokens) + sum(new_tokens),
        f"no label word in {fallbacks}/{len(gold)} outputs",
    )


def run_engine(
    model: Any,
    tokenizer: Any,
    conversations: list,
    verbalizers: Sequence[str],
    gold: Sequence[int],
    setting: str,
    *,
    batch_size: int,
    bfloat16: bool | None,
) -> tuple[Measure, list[int]]:
    """One ``score_choices`` call over every conversation; the labels are returned for comparison."""
    scores, seconds, cpu_seconds = _timed(
        lambda: score_choices(model, tokenizer, conversations, verbalizers, batch_size=batch_size, bfloat16=bfloat16)
    )
    prefix = scores.shared_prefix_tokens
    branch_tokens = sum(len(answer_tokens(tokenizer, v)) - 1 for v in verbalizers)
    tokens = prefix + sum(n - prefix + branch_tokens for n in scores.prompt_tokens)
    measure = Measure(
        setting,
        "engine" if bfloat16 is None else "engine, forced",
        scores.compute_dtype,
        seconds,
        cpu_seconds,
        sum(p == y for p, y in zip(scores.labels, gold)) / len(gold),
        tokens,
        f"shared prefix {prefix} tokens, mean prompt {sum(scores.prompt_tokens) / len(gold):.0f} tokens",
    )
    return measure, scores.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="stratified subsample of the 200 test texts")
    parser.add_argument("--shots", type=int, default=8, help="demonstrations in the few-shot setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demonstrations' draw")
    args = parser.parse_args()

    import torch
    from transformers import pipeline
    from transformers.utils import logging

    logging.set_verbosity_error()
    task, budget = load_task(TASK), get_profile("quick")
    splits = load_splits(task, Path(args.data_dir), budget)
    test = cap_examples(splits.test, args.limit, task.split.seed)
    demos = demonstrations(splits.train.texts, splits.train.labels, args.shots, len(task.labels), args.seed)
    verbalizers = [label.verbalizer for label in task.labels]
    model, tokenizer = SharedModels().causal_lm()
    n_params = sum(p.numel() for p in model.parameters())
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)

    peaks = {"float32": matmul_peak_gflops(torch.float32), "bfloat16": matmul_peak_gflops(torch.bfloat16)}
    print(f"task {task.name}: {len(test)} test texts, {args.shots} demonstrations from the train split")
    print(f"model {n_params / 1e6:.1f}M parameters, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("matmul peak: " + ", ".join(f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in peaks.items()))

    print(
        f"\n{'setting':<9} {'method':<16} {'dtype':<8} {'ex/s':>6} {'speed-up':>8} {'(CPU)':>6} {'accuracy':>8} "
        f"{'tokens':>7} {'GFLOP/s':>7} {'of peak':>7}  notes",
        flush=True,
    )
    summary = []
    for setting, shots in (("zero-shot", ()), ("few-shot", demos)):
        limit = budget.max_input_tokens
        conversations = [
            build_messages(task, text, tokenizer=tokenizer, max_input_tokens=limit, demonstrations=shots)
            for text in test.texts
        ]
        warm_up = (tokenizer, conversations[:2], verbalizers, test.labels[:2], "warm-up")
        run_recipe(pipe, *warm_up)
        run_engine(model, *warm_up, batch_size=budget.batch_size, bfloat16=None)
        common = (tokenizer, conversations, verbalizers, test.labels, setting)
        recipe = run_recipe(pipe, *common)
        print_row(recipe, recipe, len(test), n_params, peaks)
        engine, labels = run_engine(model, *common, batch_size=budget.batch_size, bfloat16=None)
        print_row(engine, recipe, len(test), n_params, peaks)
        engine_fp32, labels_fp32 = run_engine(model, *common, batch_size=budget.batch_size, bfloat16=False)
        agreement = sum(a == b for a, b in zip(labels, labels_fp32)) / len(labels)
        engine_fp32.note += f"; same labels as the engine's for {agreement:.1%}"
        print_row(engine_fp32, recipe, len(test), n_params, peaks)
        summary.append(verdict(engine, recipe))
    print("\n" + "\n".join(summary))


def print_row(m: Measure, recipe: Measure, n_examples: int, n_params: int, peaks: dict[str, float]) -> None:
    """One line of the results table; speed-ups are against ``recipe``."""
    gflops = 2 * n_params * m.tokens / m.seconds / 1e9
    print(
        f"{m.setting:<9} {m.method:<16} {m.dtype:<8} {n_examples / m.seconds:>6.2f} "
        f"{recipe.seconds / m.seconds:>7.1f}x {recipe.cpu_seconds / m.cpu_seconds:>5.1f}x {m.accuracy:>8.3f} "
        f"{m.tokens:>7} {gflops:>7.1f} {gflops / peaks[m.dtype]:>7.0%}  {m.note}",
        flush=True,
    )


def verdict(engine: Measure, recipe: Measure) -> str:
    """Whether the engine meets its speed-up (wall and CPU time) and accuracy targets in this setting."""
    target = TARGET_SPEED_UP[engine.setting]
    wall, cpu = recipe.seconds / engine.seconds, recipe.cpu_seconds / engine.cpu_seconds
    return (
        f"{engine.setting}: engine {wall:.1f}x the recipe's throughput ({cpu:.1f}x in CPU time; target {target:.0f}x: "
        f"{'met' if min(wall, cpu) >= target else 'MISSED'}), accuracy {engine.accuracy:.3f} vs {recipe.accuracy:.3f} "
        f"({'met' if engine.accuracy >= recipe.accuracy else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
