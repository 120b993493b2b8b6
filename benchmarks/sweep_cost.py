"""What a sweep costs, computed from the measured trials of run folders (no model runs).

For every strategy in the given run folders (one per task), a trial's cost is its measured wall time,
start to record: loading, option search, training, prediction and checks (the mean over the seeds
present; train + predict seconds for records without timestamps). A sweep of ``--seeds`` seeds and the learning
curve's ``--train-sizes`` repeats every trial once per seed and size; a learning-curve point is
estimated at the whole-split cost scaled by its share of the train split (fitting costs grow with the
examples; measured points are used where the run folder has them). The sweep's wall time is then
given for one worker (the local executor) and for a Ray cluster of K workers, each as fast as this
machine times ``--speedup`` (e.g. a GPU node's measured speed-up over this CPU), scheduling the
longest trials first (LPT), which is what a pool of workers pulling from one queue achieves.

    .venv/bin/python benchmarks/sweep_cost.py results/financial_sentiment/quick results/bbc/quick \\
        --seeds 3 --train-sizes 16,64,256 --workers 1,2,4,8,16

``--small`` measures its own run folder first (tfidf-linear, no language model, two seeds and one
learning-curve size on the smoke profile, in a temporary folder; needs ``--data-dir``) and estimates
from it: a check that the script runs, in seconds.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TASKS = Path(__file__).resolve().parents[1] / "tasks"
"""The built-in task YAMLs."""
SMALL_RUN: dict[str, Any] = {"strategies": "tfidf-linear", "profile": "smoke", "seeds": [0, 1], "train_sizes": [16], "tuning_trials": 1}
"""The run ``--small`` measures (on financial_sentiment)."""


def trial_seconds(run_dir: Path) -> tuple[dict[str, float], dict[tuple[str, int], float], int, set[str]]:
    """Per variant: mean trial seconds on the whole split; per (variant, size) where measured; the
    train size; the variants that learn from no train example (run once per seed, whatever the sizes)."""
    from slmbench.records import TrialRecord
    from slmbench.report.summary import load_summary

    def seconds(trial: TrialRecord) -> float:
        return trial.wall_seconds or (trial.cost.train_seconds or 0.0) + (trial.cost.predict_seconds or 0.0)

    summary = load_summary(run_dir)
    whole = {entry.name: statistics.fmean(map(seconds, entry.trials)) for entry in summary.entries}
    points: dict[tuple[str, int], list[float]] = {}
    for record in summary.trials:
        if record.ok and record.train_size is not None:
            points.setdefault((record.name, record.train_size), []).append(seconds(record))
    n_train = summary.run.splits.sizes.get("train", 0) if summary.run else 0
    flat = {entry.name for entry in summary.entries if not entry.first.learns_from_train}
    return whole, {key: statistics.fmean(values) for key, values in points.items()}, n_train, flat


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of ``durations`` on ``workers`` identical workers, longest first (LPT)."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def sweep_durations(run_dir: Path, seeds: int, sizes: list[int], speedup: float) -> tuple[list[float], dict[str, float]]:
    """The seconds of every trial of the sweep for one run folder (task), and each strategy's measured
    whole-split seconds for one seed."""
    whole, measured, n_train, flat = trial_seconds(run_dir)
    durations: list[float] = []
    for name, seconds in whole.items():
        curve = [] if name in flat else [measured.get((name, size), seconds * min(1.0, size / max(n_train, 1))) for size in sizes]
        durations += [s / speedup for s in [seconds, *curve] for _ in range(seeds)]
    return durations, whole


def small_run(data_dir: str, output: Path) -> Path:
    """Measure ``SMALL_RUN`` into ``output``; its run folder."""
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.run_options import RunOptions
    from slmbench.engine.runner import run_benchmark
    from slmbench.strategy.registry import load_registry

    options = RunOptions(task=str(TASKS / "financial_sentiment.yaml"), data_dir=data_dir, output=str(output), **SMALL_RUN)
    return run_benchmark(options, load_registry(), ProgressReporter(False)).run_dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="*")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-sizes", default="16,64,256", help="learning-curve sizes besides the whole split")
    parser.add_argument("--workers", default="1,2,4,8,16", help="cluster sizes to estimate")
    parser.add_argument("--speedup", type=float, default=1.0, help="each worker's speed relative to this machine")
    parser.add_argument("--small", action="store_true", help=f"measure a tiny run folder first and estimate from it: {SMALL_RUN}")
    parser.add_argument("--data-dir", default=os.environ.get("SLMBENCH_DATA_DIR", "../shared/data"), help="for --small")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.run_dirs and not args.small:
        parser.error("give run folders, or --small")
    return args


def estimate(args: argparse.Namespace, run_dirs: list[Path]) -> dict[str, Any]:
    """The sweep's trials and its wall time on each cluster size, printed as a Markdown table."""
    sizes = [int(size) for size in args.train_sizes.split(",") if size]
    durations: list[float] = []
    tasks = []
    for run_dir in run_dirs:
        task_durations, whole = sweep_durations(run_dir, args.seeds, sizes, args.speedup)
        durations += task_durations
        tasks.append({"run_dir": str(run_dir), "strategy_seconds": {name: round(s, 2) for name, s in whole.items()}})
        print(f"{run_dir}: {len(whole)} strategies, {sum(whole.values()) / 60:,.1f} min for one seed on the whole split")
    print(
        f"sweep: {len(durations)} trials ({args.seeds} seeds x (whole split + {len(sizes)} train sizes) x strategies x "
        f"{len(run_dirs)} tasks), {sum(durations) / 3600:,.1f} h of trial time"
    )
    clusters = [
        {"workers": workers, "wall_hours": makespan(durations, workers) / 3600, "longest_trial_minutes": max(durations) / 60}
        for workers in (int(w) for w in args.workers.split(","))
    ]
    print("| workers | wall time (h) | longest trial (min) |")
    print("|---|---|---|")
    for row in clusters:
        print(f"| {row['workers']} | {row['wall_hours']:,.2f} | {row['longest_trial_minutes']:,.1f} |")
    return {"tasks": tasks, "trials": len(durations), "trial_hours": sum(durations) / 3600, "clusters": clusters}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the estimate; returns the figures (also written to ``--json``)."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slmbench-sweep-cost-") as folder:
        run_dirs = [*args.run_dirs, small_run(args.data_dir, Path(folder))] if args.small else list(args.run_dirs)
        figures = {
            "benchmark": "sweep_cost",
            "seeds": args.seeds,
            "train_sizes": args.train_sizes,
            "speedup": args.speedup,
            **estimate(args, run_dirs),
        }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
