"""Scoring engine throughput, zero-shot and few-shot, on financial_sentiment: today's engine as the named baseline.

Every engine set-up is ``slmbench.lm.scoring.score_choices`` on the same chat messages
(``slmbench.lm.prompts.build_messages``) for the same test texts: the quick profile's stratified
200-example test split (seed 13), or a stratified ``--limit``. In one process, interleaved, each
``--repeats`` times (the median counts):

- ``today's engine`` (the named baseline every ratio is against): ``score_choices`` with the values
  strategies passed before issue 14 (``TODAY_ENGINE``: the quick profile's batch of 8 prompts);
- ``engine``: ``score_choices``' defaults as the strategies call it now;
- ``engine, batch N``: the same with N prompts per forward pass (``--batch-sizes``);
- ``engine, fp32``: bf16 autocast off (how far bf16 moves labels);
- ``pipeline recipe`` (``--pipeline``, slow): the seed notebooks' ``pipeline("text-generation")``,
  one prompt at a time, 4 greedy new tokens, label by substring match of its verbalizer.

Speed-ups are on wall time and on the process's CPU time (steadier when other jobs share the
cores). Labels are compared with today's engine's, example by example. GFLOP/s count 2 x the
linear layers' parameters (the vocabulary projection, run at a few positions only, and attention
left out) x the tokens run through the model per wall second, against the matmul peak of the
set-up's dtype measured at the start (``slmbench.lm.hardware``).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/zero_shot_vs_pipeline.py --data-dir ../shared/data --json scoring.json

``--small`` (``SMALL``: 6 test texts, one timed run) checks that it runs (``tests/test_benchmarks.py``)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/zero_shot_vs_pipeline.py --data-dir ../shared/data --small --json /tmp/scoring.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmbench.lm.models import SharedModels
from slmbench.lm.prompts import build_messages
from slmbench.lm.scoring import answer_tokens, score_choices, tokenize_prompts
from slmbench.tasks.profiles import get_profile
from slmbench.tasks.spec import load_task
from slmbench.tasks.splits import cap_examples, load_splits

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "financial_sentiment.yaml"
MAX_NEW_TOKENS = 4
TODAY_ENGINE = {"batch_size": 8}
"""``score_choices`` arguments of today's engine as the strategies called it (the quick profile's batch)."""


@dataclass
class Measure:
    setting: str
    method: str
    dtype: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    accuracy: float = 0.0
    tokens: int = 0
    """Tokens run through the model."""
    labels: list[int | None] = field(default_factory=list)
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_seconds)


def _timed(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """``function()``, its wall time and the process's CPU time (every thread), in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def demonstrations(texts: Sequence[str], labels: Sequence[int], n: int, n_labels: int, seed: int) -> list[tuple[str, int]]:
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
    return min(found, key=lambda i: found[i]) if found else None


def run_recipe(pipe: Any, tokenizer: Any, conversations: list, verbalizers: Sequence[str], measure: Measure) -> None:
    """The notebooks' loop: generate, then look for a label word in the generated text."""
    outputs, seconds, cpu_seconds = _timed(
        lambda: [
            pipe(c, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_full_text=False)[0]["generated_text"] for c in conversations
        ]
    )
    measure.seconds.append(seconds)
    measure.cpu_seconds.append(cpu_seconds)
    measure.labels = [matched_label(o, verbalizers) for o in outputs]
    prompt_tokens = [len(ids) for ids in tokenize_prompts(tokenizer, conversations)]
    new_tokens = [len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs]
    measure.tokens = sum(prompt_tokens) + sum(new_tokens)
    measure.note = f"no label word in {sum(p is None for p in measure.labels)}/{len(outputs)} outputs"


def run_engine(model: Any, tokenizer: Any, conversations: list, verbalizers: Sequence[str], measure: Measure, options: dict) -> None:
    """One ``score_choices`` call over every conversation with ``options``."""
    scores, seconds, cpu_seconds = _timed(lambda: score_choices(model, tokenizer, conversations, verbalizers, **options))
    measure.seconds.append(seconds)
    measure.cpu_seconds.append(cpu_seconds)
    measure.labels = scores.labels
    measure.dtype = scores.compute_dtype
    prefix = scores.shared_prefix_tokens
    branch_tokens = sum(len(answer_tokens(tokenizer, v)) - 1 for v in verbalizers)
    measure.tokens = prefix + sum(n - prefix + branch_tokens for n in scores.prompt_tokens)
    measure.note = f"shared prefix {prefix} tokens, mean prompt {sum(scores.prompt_tokens) / len(conversations):.0f} tokens"


def linear_parameters(model: Any) -> int:
    """Parameters of the linear layers but the vocabulary projection."""
    import torch

    head = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)


SMALL = {"limit": 6, "shots": 2, "repeats": 1, "batch_sizes": "4", "threads": 1}
"""``--small``: 6 test texts, 2 demonstrations, one timed run, one extra batch size, one thread (a
check that the benchmark runs, in well under a minute; its figures mean little)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="stratified subsample of the 200 test texts")
    parser.add_argument("--shots", type=int, default=8, help="demonstrations in the few-shot setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demonstrations' draw")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of every engine set-up (median)")
    parser.add_argument("--batch-sizes", default="16,32", help="extra engine batch sizes, comma-separated")
    parser.add_argument("--pipeline", action="store_true", help="also the seed notebooks' pipeline recipe (slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--small", action="store_true", help=f"a quick check that it runs: {SMALL}")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.small:  # the small values, unless given
        parser.set_defaults(**SMALL)
        args = parser.parse_args(argv)
    return args


def engine_set_ups(batch_size: int, extra_batch_sizes: str) -> dict[str, dict[str, Any]]:
    """Engine set-up name -> ``score_choices`` arguments; today's engine first (the baseline)."""
    return {
        "today's engine": TODAY_ENGINE,
        "engine": {"batch_size": batch_size},
        **{f"engine, batch {n}": {"batch_size": int(n)} for n in extra_batch_sizes.split(",") if n},
        "engine, fp32": {"batch_size": batch_size, "bfloat16": False},
    }


def measure_setting(
    setting: str, conversations: list, engines: dict[str, dict[str, Any]], args: argparse.Namespace, lm: tuple, verbalizers: list[str]
) -> dict[str, Measure]:
    """Every engine set-up on ``conversations``, ``--repeats`` times interleaved after a warm-up; the
    pipeline recipe once with ``--pipeline``."""
    model, tokenizer = lm
    run_engine(model, tokenizer, conversations[:8], verbalizers, Measure(setting, "warm-up", ""), TODAY_ENGINE)
    measures = {name: Measure(setting, name, "") for name in engines}
    for _ in range(args.repeats):
        for name, options in engines.items():
            run_engine(model, tokenizer, conversations, verbalizers, measures[name], options)
    if args.pipeline:
        from transformers import pipeline

        pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
        measures["pipeline recipe"] = Measure(setting, "pipeline recipe", "float32")
        run_recipe(pipe, tokenizer, conversations, verbalizers, measures["pipeline recipe"])
    return measures


def print_header(hardware: dict[str, Any], task: Any, n_test: int, shots: int) -> None:
    print(f"task {task.name}: {n_test} test texts, {shots} demonstrations from the train split")
    print(f"{hardware['cpu_model']}, {hardware['cpu_features']}, {hardware['torch_threads']} torch threads")
    print("matmul peak: " + ", ".join(f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in hardware["matmul_peak_gflops"].items()))
    print(
        f"\n{'setting':<9} {'method':<20} {'dtype':<8} {'ex/s':>6} {'speed-up':>8} {'(CPU)':>6} {'same':>6} "
        f"{'accuracy':>8} {'GFLOP/s':>7} {'of peak':>7}  notes",
        flush=True,
    )


def print_summary(rows: list[dict[str, Any]]) -> None:
    print()
    for row in rows:
        if row["method"] == "engine":
            print(
                f"{row['setting']}: engine {row['speed_up']:.2f}x today's engine ({row['cpu_speed_up']:.2f}x in CPU time), "
                f"same labels on {row['same_labels']:.1%} of examples, {row['fraction_of_peak']:.0%} of the {row['dtype']} peak"
            )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)

    import torch
    from transformers.utils import logging

    from slmbench.lm.hardware import hardware_info

    logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    hardware = hardware_info().model_dump()
    task, budget = load_task(TASK), get_profile("quick")
    splits = load_splits(task, Path(args.data_dir), budget)
    test = cap_examples(splits.test, args.limit, task.split.seed)
    demos = demonstrations(splits.train.texts, splits.train.labels, args.shots, len(task.labels), args.seed)
    verbalizers = [label.verbalizer for label in task.labels]
    model, tokenizer = SharedModels().causal_lm()
    flops_per_token = 2 * linear_parameters(model)
    engines = engine_set_ups(budget.batch_size, args.batch_sizes)
    print_header(hardware, task, len(test), args.shots)
    rows = []
    for setting, shots in (("zero-shot", ()), ("few-shot", demos)):
        conversations = [
            build_messages(task, text, tokenizer=tokenizer, max_input_tokens=budget.max_input_tokens, demonstrations=shots)
            for text in test.texts
        ]
        measures = measure_setting(setting, conversations, engines, args, (model, tokenizer), verbalizers)
        baseline = measures["today's engine"]
        for m in measures.values():
            m.accuracy = sum(p == y for p, y in zip(m.labels, test.labels)) / len(test.labels)
            rows.append(figures(m, baseline, len(test), flops_per_token, hardware["matmul_peak_gflops"]))
            print_row(rows[-1])
    print_summary(rows)
    summary = {
        "benchmark": "scoring",
        "args": {key: value for key, value in vars(args).items() if key != "json"},
        "hardware": hardware,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=2)
        print(f"figures written to {args.json}")
    return summary


def figures(m: Measure, baseline: Measure, n_examples: int, flops_per_token: int, peaks: dict[str, float]) -> dict[str, Any]:
    """One row of results; ratios against ``baseline`` (today's engine)."""
    gflops = flops_per_token * m.tokens / m.wall / 1e9
    same = sum(a == b for a, b in zip(m.labels, baseline.labels)) / len(baseline.labels)
    row = {k: v for k, v in asdict(m).items() if k != "labels"}
    return {
        **row,
        "examples_per_second": round(n_examples / m.wall, 2),
        "speed_up": round(baseline.wall / m.wall, 3),
        "cpu_speed_up": round(baseline.cpu / m.cpu, 3),
        "same_labels": round(same, 4),
        "gflops": round(gflops, 1),
        "fraction_of_peak": round(gflops / peaks[m.dtype], 4),
    }


def print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['setting']:<9} {row['method']:<20} {row['dtype']:<8} {row['examples_per_second']:>6.2f} "
        f"{row['speed_up']:>7.2f}x {row['cpu_speed_up']:>5.2f}x {row['same_labels']:>6.1%} {row['accuracy']:>8.3f} "
        f"{row['gflops']:>7.1f} {row['fraction_of_peak']:>7.1%}  {row['note']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
